"""Block Kit builders: pure functions from data to a message (`text` fallback + `blocks`).

Everything that comes from outside the code (question bank, user input) goes through `escape()`, so
`<!channel>` or `<@U123>` typed by someone is shown, never executed. Every builder keeps within Slack's
limits (50 blocks, 3,000 characters per section text, 150 per header) by splitting or truncating.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bot.domain.questions import Question, QuestionBank
from bot.domain.streaks import Streak

__all__ = [
    "Message",
    "drill_message",
    "escape",
    "help_message",
    "leaderboard_message",
    "practice_message",
    "refusal_message",
    "reveal_message",
    "unknown_filter_message",
]

Message = dict[str, Any]
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_TEXT = 3900  # fallback `text`; Slack truncates long text, keep it readable
COMMAND = "/interview-question"


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: the three control characters, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _chunks(text: str, limit: int = MAX_SECTION) -> list[str]:
    """Split on paragraph, then line, then word boundaries so each chunk fits a section."""
    chunks: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = max(rest.rfind("\n\n", 0, limit), rest.rfind("\n", 0, limit), rest.rfind(" ", 0, limit))
        if cut <= 0:
            cut = limit
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        chunks.append(rest)
    return chunks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(text, MAX_SECTION)}}


def _sections(text: str) -> list[dict[str, Any]]:
    return [_section(chunk) for chunk in _chunks(text)]


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _truncate(text, MAX_SECTION)}]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _truncate(text, MAX_HEADER), "emoji": True}}


def _message(text: str, blocks: Sequence[dict[str, Any]]) -> Message:
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - 1], _context("(shortened to fit in one Slack message)")]
    return {"text": _truncate(text, MAX_TEXT), "blocks": list(blocks)}


def slack_date(moment: datetime, fallback_format: str = "%a %d %b %H:%M UTC") -> str:
    """A date every reader sees in their own time zone; the fallback is UTC."""
    fallback = moment.strftime(fallback_format)
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _meta(question: Question) -> str:
    return f"*Category:* {escape(question.category)}  ·  *Difficulty:* {escape(question.difficulty)}"


def drill_message(
    question: Question, *, deadline: datetime, closed: bool = False, answered: int | None = None
) -> Message:
    title = escape(question.title)
    blocks: list[dict[str, Any]] = [_header("Interview drill"), _section(f"*{title}*"), _context(_meta(question))]
    if closed:
        count = answered or 0
        status = f":white_check_mark: *Closed.* {count} answered. The guidance is in the thread."
        text = f"Interview drill (closed, {count} answered): {question.title}"
    else:
        status = (
            ":speech_balloon: *Reply in this thread* to answer. "
            f"Answers close {slack_date(deadline)}; then the guidance is posted here."
        )
        text = escape(
            f"Interview drill: {question.title} ({question.category}, {question.difficulty}). "
            "Reply in the thread to answer before "
        ) + f"{slack_date(deadline)}."
        blocks.append(_section(status))
        return _message(text, blocks)
    blocks.append(_section(status))
    return _message(escape(text), blocks)


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"• {escape(item)}" for item in items)


def reveal_message(question: Question, *, answered: int) -> Message:
    blocks: list[dict[str, Any]] = [
        _header("Guidance"),
        _section(f"*{escape(question.title)}*"),
        *_sections(escape(question.guidance)),
        *_sections(f"*Key points*\n{_bullets(question.key_points)}"),
    ]
    if question.follow_ups:
        blocks.extend(_sections(f"*Follow-up questions*\n{_bullets(question.follow_ups)}"))
    blocks.append(_context(f"{answered} answered. Thanks to everyone who took part."))
    text = f"Guidance for: {question.title}\n\n{question.guidance}"
    return _message(escape(text), blocks)


def practice_message(question: Question) -> Message:
    tags = ", ".join(escape(t) for t in question.tags)
    blocks = [
        _section(f":brain: *{escape(question.title)}*"),
        _context(f"{_meta(question)}  ·  *Tags:* {tags}"),
        _context(f"Practice question, visible only to you. `{COMMAND} help` shows the filters."),
    ]
    return _message(escape(f"Practice question: {question.title}"), blocks)


def help_message(bank: QuestionBank) -> Message:
    categories = ", ".join(f"`{escape(c)}`" for c in sorted(bank.categories))
    body = (
        f"*{COMMAND}*: a practice question, visible only to you.\n"
        f"• `{COMMAND}`: any question\n"
        f"• `{COMMAND} caching` or `{COMMAND} hard` or `{COMMAND} databases hard`: narrow by category, "
        "tag or difficulty (all words must match)\n"
        f"• `{COMMAND} leaderboard`: the streak leaderboard (managers only)\n"
        f"• `{COMMAND} help`: this message\n\n"
        f"*Categories:* {categories}\n*Difficulties:* `easy`, `medium`, `hard`"
    )
    return _message(f"How to use {COMMAND}", _sections(body))


def unknown_filter_message(unknown: Sequence[str], bank: QuestionBank, *, no_match: bool = False) -> Message:
    if no_match:
        lead = "No question matches all of those filters."
    else:
        lead = f"I don't know {', '.join(f'`{escape(u)}`' for u in unknown)}."
    categories = ", ".join(f"`{escape(c)}` ({n})" for c, n in sorted(bank.categories.items()))
    tags = ", ".join(f"`{escape(t)}`" for t in sorted(bank.tags))
    body = (
        f"{lead} Try a category, a tag or a difficulty.\n\n*Categories:* {categories}\n"
        f"*Difficulties:* `easy`, `medium`, `hard`\n*Tags:* {tags}"
    )
    return _message(lead, _sections(body))


def leaderboard_message(streaks: Sequence[Streak], *, limit: int = 25) -> Message:
    if not streaks:
        return _message("No answers yet", [_section("*Streak leaderboard*\nNo answers yet.")])
    lines = [
        f"{rank}. <@{s.user_id}>: current streak *{s.current}*, longest {s.longest}, {s.total} answers"
        for rank, s in enumerate(streaks[:limit], start=1)
    ]
    if len(streaks) > limit:
        lines.append(f"…and {len(streaks) - limit} more (`drillbot leaderboard` shows everyone).")
    return _message("Streak leaderboard", _sections("*Streak leaderboard*\n" + "\n".join(lines)))


def refusal_message() -> Message:
    text = "Sorry, the leaderboard is only for the drill's managers. Your own answers count as usual."
    return _message(text, [_section(text)])
