"""Block Kit builders: pure functions from data to a message (`text` fallback + `blocks`) or a view.

Blocks, elements and views are slack_sdk's models (`slack_sdk.models.blocks`, `slack_sdk.models.views`),
which check Slack's limits as they are turned into JSON (a header's 150 characters, a section's 3,000, a
button's value, a view's 100 blocks): a builder that broke one would fail in its tests, never at Slack.
What the SDK checks but does not fix is done here: long text is split into sections on paragraph, line
or word boundaries, or truncated with an ellipsis, and a message keeps to 50 blocks (the SDK has no
maintained message model that checks that). Builders return plain dicts, ready for the Web API.

Everything that comes from outside the code (question bank, user input) goes through `escape()`, so
`<!channel>` or `<@U123>` typed by someone is shown, never executed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.domain.practice import category_scores
from bot.domain.questions import Question, QuestionBank
from bot.domain.streaks import Streak

__all__ = [
    "Message",
    "text_message",
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
MAX_BLOCKS = 50  # in a message; a view's limit is the SDK's (View.blocks_max_length, 100)
MAX_SECTION = SectionBlock.text_max_length
MAX_HEADER = HeaderBlock.text_max_length
MAX_CONTEXT_TEXT = 3000  # a context element's text (not checked by the SDK)
MAX_INPUT = 3000  # a plain_text_input's max_length and initial_value
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


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_truncate(text, MAX_SECTION)))


def _sections(text: str) -> list[Block]:
    return [_section(chunk) for chunk in _chunks(text)]


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=_truncate(text, MAX_CONTEXT_TEXT))])


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=_truncate(text, MAX_HEADER), emoji=True))


def _plain(text: str) -> PlainTextObject:
    return PlainTextObject(text=text)


def _json(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    """The blocks as Web API JSON; the SDK checks each one against Slack's limits here."""
    return [block.to_dict() for block in blocks]


def _message(text: str, blocks: Sequence[Block]) -> Message:
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - 1], _context("(shortened to fit in one Slack message)")]
    return {"text": _truncate(text, MAX_TEXT), "blocks": _json(blocks)}


def _view(view: View) -> dict[str, Any]:
    result: dict[str, Any] = view.to_dict()  # checked: title, buttons, private_metadata, 100 blocks
    return result


def text_message(text: str) -> Message:
    """A message of one line of mrkdwn (a command's short reply)."""
    return _message(text, [_section(text)])


def slack_date(moment: datetime, fallback_format: str = "%a %d %b %H:%M UTC") -> str:
    """A date every reader sees in their own time zone; the fallback is UTC."""
    fallback = moment.strftime(fallback_format)
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _meta(question: Question) -> str:
    return f"*Category:* {escape(question.category)}  ·  *Difficulty:* {escape(question.difficulty)}"


# Action and view ids: the contract between these builders and bot/listeners.
ANSWER_ACTION = "drill_answer"
ANSWER_VIEW = "sealed_answer"
ANSWER_BLOCK, ANSWER_INPUT = "answer", "answer_text"
RATE_ACTION_PREFIX = "rate_"
NO_FEEDBACK_YET = "Tick your checklist after a reveal (it comes as a DM) to see your strong and weak spots."
RATE_CHOICES = (("nailed", "Nailed it"), ("partly", "Partly"), ("missed", "Missed"))
PRACTICE_GUIDANCE = "practice_show_guidance"
PRACTICE_ANOTHER = "practice_another"
HOME_PRACTICE = "home_practice"
PRACTICE_VIEW = "practice_modal"


def _button(text: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=text, emoji=True),
        action_id=action_id,
        value=value[: ButtonElement.value_max_length],
        style=style,
    )


def _actions(block_id: str, *buttons: ButtonElement) -> ActionsBlock:
    return ActionsBlock(block_id=block_id, elements=list(buttons))


def countdown(deadline: datetime) -> str:
    """The deadline in each reader's time zone, and how far away it is (Slack renders both)."""
    fallback = deadline.strftime("%a %d %b %H:%M UTC")
    return f"<!date^{int(deadline.timestamp())}^{{date_short_pretty}} at {{time}} ({{ago}})|{fallback}>"


def drill_message(
    question: Question,
    *,
    deadline: datetime,
    closed: bool = False,
    answered: int = 0,
    sealed: bool = False,
    drill_id: int | None = None,
) -> Message:
    title = escape(question.title)
    blocks: list[Block] = [_header("Interview drill"), _section(f"*{title}*"), _context(_meta(question))]
    if closed:
        blocks.append(_section(f":white_check_mark: *Closed.* {answered} answered. The guidance is in the thread."))
        return _message(escape(f"Interview drill (closed, {answered} answered): {question.title}"), blocks)
    how = (
        "*Answer privately* with the button (or reply in this thread)" if sealed else "*Reply in this thread* to answer"
    )
    blocks.append(
        _section(f":speech_balloon: {how}. Answers close {countdown(deadline)}; then the guidance is posted here.")
    )
    if sealed and drill_id is not None:
        blocks.append(_actions("drill_actions", _button("Answer", ANSWER_ACTION, str(drill_id), "primary")))
    blocks.append(_context(f":busts_in_silhouette: {answered} answered so far"))
    text = (
        escape(
            f"Interview drill: {question.title} ({question.category}, {question.difficulty}). "
            "Reply in the thread to answer before "
        )
        + f"{slack_date(deadline)}."
    )
    return _message(text, blocks)


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"• {escape(item)}" for item in items)


def _guidance_blocks(question: Question) -> list[Block]:
    blocks = [*_sections(escape(question.guidance)), *_sections(f"*Key points*\n{_bullets(question.key_points)}")]
    if question.follow_ups:
        blocks.extend(_sections(f"*Follow-up questions*\n{_bullets(question.follow_ups)}"))
    return blocks


def reveal_message(question: Question, *, answered: int, drill_id: int | None = None) -> Message:
    blocks: list[Block] = [
        _header("Guidance"),
        _section(f"*{escape(question.title)}*"),
        *_guidance_blocks(question),
        _context(f":busts_in_silhouette: {answered} answered. Thanks to everyone who took part."),
    ]
    if drill_id is not None:
        blocks.append(
            _context(
                ":ballot_box_with_check: Everyone who answered gets the key points as a private checklist in a DM "
                f"from drillbot: tick what your answer covered (`{COMMAND} feedback off` to stop them)."
            )
        )
    text = f"Guidance for: {question.title}\n\n{question.guidance}"
    tail = 2 if drill_id is not None else 1  # participation line and the checklist note always fit
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - tail - 1], _context("(guidance shortened to fit)"), *blocks[-tail:]]
    return _message(escape(text), blocks)


def sealed_answers_messages(answers: Sequence[tuple[str, str]]) -> list[Message]:
    """The sealed answers, attributed and escaped, split into as many messages as the limits need."""
    if not answers:
        return []
    blocks: list[Block] = [_section(f"*Sealed answers* ({len(answers)})")]
    for user_id, text in answers:
        blocks.extend(_sections(f"*<@{user_id}>*\n{escape(text) or '_(empty)_'}"))
    messages = []
    per_message = MAX_BLOCKS - 1
    for start in range(0, len(blocks), per_message):
        part = blocks[start : start + per_message]
        messages.append(_message(f"Sealed answers ({len(answers)})", part))
    return messages


def reminder_message(*, left: timedelta, answered: int) -> Message:
    minutes = max(1, round(left.total_seconds() / 60))
    when = f"{minutes} minutes" if minutes < 120 else f"about {round(minutes / 60)} hours"
    return text_message(f":hourglass_flowing_sand: {when} left to answer this drill. {answered} answered so far.")


def answer_modal(question: Question, *, drill_id: int, current: str = "") -> dict[str, Any]:
    element = PlainTextInputElement(
        action_id=ANSWER_INPUT,
        multiline=True,
        max_length=MAX_INPUT,
        placeholder=_plain("Your answer stays private until the reveal"),
        initial_value=current[:MAX_INPUT] or None,
    )
    return _view(
        View(
            type="modal",
            callback_id=ANSWER_VIEW,
            private_metadata=str(drill_id),
            title=_plain("Your answer"),
            submit=_plain("Submit"),
            close=_plain("Cancel"),
            blocks=[
                _section(f"*{escape(question.title)}*"),
                InputBlock(block_id=ANSWER_BLOCK, label=_plain("Answer"), element=element),
                _context("Only you see it until the answer window closes; then it is posted in the drill's thread."),
            ],
        )
    )


def practice_blocks(question: Question, *, filters: str = "", show_guidance: bool = False) -> list[Block]:
    tags = ", ".join(escape(t) for t in question.tags)
    blocks: list[Block] = [
        _section(f":brain: *{escape(question.title)}*"),
        _context(f"{_meta(question)}  ·  *Tags:* {tags}"),
    ]
    buttons = []
    if show_guidance:
        blocks.extend(_guidance_blocks(question))
    else:
        buttons.append(_button("Show guidance", PRACTICE_GUIDANCE, f"{question.id}|{filters}", "primary"))
    buttons.append(_button("Another one", PRACTICE_ANOTHER, filters))
    blocks = blocks[: MAX_BLOCKS - 1]
    blocks.append(_actions("practice", *buttons))
    return blocks


def practice_message(question: Question, *, filters: str = "", show_guidance: bool = False) -> Message:
    return _message(
        escape(f"Practice question: {question.title}"),
        practice_blocks(question, filters=filters, show_guidance=show_guidance),
    )


def practice_modal(question: Question, *, show_guidance: bool = False) -> dict[str, Any]:
    return _view(
        View(
            type="modal",
            callback_id=PRACTICE_VIEW,
            title=_plain("Practice"),
            close=_plain("Done"),
            blocks=practice_blocks(question, show_guidance=show_guidance),
        )
    )


def help_message(bank: QuestionBank) -> Message:
    categories = ", ".join(f"`{escape(c)}`" for c in sorted(bank.categories))
    body = (
        f"*{COMMAND}*: a practice question, visible only to you.\n"
        f"• `{COMMAND}`: any question\n"
        f"• `{COMMAND} caching` or `{COMMAND} hard` or `{COMMAND} databases hard`: narrow by category, "
        "tag or difficulty (all words must match)\n"
        f"• `{COMMAND} stats`: your own streak, answers and self-ratings\n"
        f"• `{COMMAND} categories`: categories and tags, with how many questions each\n"
        f"• `{COMMAND} snooze until 2026-12-31` / `{COMMAND} resume`: a break that doesn't break your streak\n"
        f"• `{COMMAND} private on` / `off`: keep yourself off the leaderboard (you still drill)\n"
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


def leaderboard_message(streaks: Sequence[Streak], *, limit: int = 25, hidden: int = 0) -> Message:
    private = f"\n…plus {hidden} people who keep their streaks private." if hidden else ""
    if not streaks:
        return _message("No answers yet", [_section(f"*Streak leaderboard*\nNo answers yet.{private}")])
    lines = [
        f"{rank}. <@{s.user_id}>: current streak *{s.current}*, longest {s.longest}, {s.total} answers"
        for rank, s in enumerate(streaks[:limit], start=1)
    ]
    if len(streaks) > limit:
        lines.append(f"…and {len(streaks) - limit} more (`drillbot leaderboard` shows everyone).")
    if hidden:
        lines.append(private.strip())
    return _message("Streak leaderboard", _sections("*Streak leaderboard*\n" + "\n".join(lines)))


def refusal_message() -> Message:
    return text_message("Sorry, the leaderboard is only for the drill's managers. Your own answers count as usual.")


def _rating_lines(ratings: Mapping[str, Mapping[str, int]]) -> list[str]:
    scores = category_scores(ratings)
    lines = []
    for category in sorted(scores, key=lambda c: (scores[c], c)):
        counts = ratings[category]
        verdict = "strong" if scores[category] >= 1.5 else "weak" if scores[category] < 1 else "so-so"
        lines.append(
            f"• *{escape(category)}*: {verdict} ({counts.get('nailed', 0)} nailed, "
            f"{counts.get('partly', 0)} partly, {counts.get('missed', 0)} missed)"
        )
    return lines


def _streak_line(streak: Streak | None) -> str:
    if streak is None:
        return "Current streak: 0  ·  Longest streak: 0  ·  Answers: 0"
    return f"Current streak: {streak.current}  ·  Longest streak: {streak.longest}  ·  Answers: {streak.total}"


def stats_message(
    streak: Streak | None,
    ratings: Mapping[str, Mapping[str, int]],
    *,
    snoozed_until: date | None = None,
    coverage: Mapping[str, float] | None = None,
    missed: Sequence[tuple[str, int, int]] = (),
) -> Message:
    lines = ["*Your drill stats* (only you see this)", _streak_line(streak)]
    if snoozed_until:
        lines.append(f":zzz: Snoozed until {snoozed_until.isoformat()} (`{COMMAND} resume` to come back early).")
    if coverage:
        covered = "\n".join(coverage_lines(coverage, missed))
        lines.append(f"*Key points you covered, by category* (your checklists)\n{covered}")
    rated = _rating_lines(ratings)
    if rated:
        lines.append("*Self-ratings by category*\n" + "\n".join(rated))
    elif not coverage:
        lines.append(NO_FEEDBACK_YET)
    return _message(_streak_line(streak), _sections("\n".join(lines)))


def categories_message(bank: QuestionBank) -> Message:
    categories = ", ".join(f"`{escape(c)}` ({n})" for c, n in sorted(bank.categories.items()))
    tags = ", ".join(f"`{escape(t)}` ({n})" for t, n in sorted(bank.tags.items()))
    body = f"*Categories*\n{categories}\n\n*Tags*\n{tags}"
    return _message(f"{len(bank.categories)} categories, {len(bank.tags)} tags", _sections(body))


@dataclass(frozen=True)
class RecentDrill:
    day: date
    question: Question | None
    answered: int
    revealed: bool


@dataclass(frozen=True)
class ManagedProgram:
    """What a manager sees of one program: the leaderboard (private people counted) and participation."""

    name: str
    leaderboard: Sequence[Streak]
    hidden_count: int
    recent: Sequence[RecentDrill]


@dataclass(frozen=True)
class HomeData:
    streak: Streak | None
    recent: Sequence[RecentDrill]
    ratings: Mapping[str, Mapping[str, int]]
    snoozed_until: date | None = None
    managed: Sequence[ManagedProgram] = ()  # only the programs the viewer manages
    coverage: Mapping[str, float] = field(default_factory=dict)
    missed: Sequence[tuple[str, int, int]] = ()
    checklists: Sequence[tuple[date, str, str | None, str | None]] = ()
    other_streaks: Sequence[tuple[str, Streak]] = ()  # the viewer's own streaks in further programs


def _title(question: Question | None) -> str:
    return escape(question.title) if question else "question removed from the bank"


def home_view(data: HomeData) -> dict[str, Any]:
    """The App Home tab. Everything on it is the viewer's own, except the manager section."""
    blocks: list[Block] = [_header("Your interview drills"), _section(_streak_line(data.streak))]
    for name, streak in data.other_streaks:
        blocks.append(_context(f"*{escape(name)}*: {_streak_line(streak)}"))
    if data.snoozed_until:
        blocks.append(
            _context(f":zzz: Snoozed until {data.snoozed_until.isoformat()}: missed drills don't break your streak.")
        )
    blocks.append(_actions("home", _button("Practice a question", HOME_PRACTICE, "home", "primary")))
    if data.coverage:
        blocks.extend(_sections("*Where you stand* (key points covered, from your checklists)\n"
                                + "\n".join(coverage_lines(data.coverage, data.missed))))
    rated = _rating_lines(data.ratings)
    if rated or not data.coverage:
        blocks.append(
            _section("*Where you stand* (your self-ratings)\n" + ("\n".join(rated) if rated else NO_FEEDBACK_YET))
        )
    if data.checklists:
        links = [
            f"• {day.isoformat()}: <{thread_link(channel, ts)}|{escape(title)}>"
            if channel and ts
            else f"• {day.isoformat()}: {escape(title)}"
            for day, title, channel, ts in data.checklists
        ]
        blocks.append(_section("*Your checklists* (change your ticks any time)\n" + "\n".join(links)))
    blocks.append(DividerBlock())
    blocks.append(_section("*Recent drills*"))
    for drill in [d for d in data.recent if d.revealed][:5]:  # an open drill's guidance would spoil it
        if drill.question is None:
            continue
        guidance = _truncate(escape(drill.question.guidance), 600)
        blocks.append(_section(f"*{drill.day.isoformat()}*: {escape(drill.question.title)}\n{guidance}"))
    if data.managed:
        blocks.append(DividerBlock())
        blocks.append(_header("Manager view"))
    for program in data.managed:
        title = f" ({escape(program.name)})" if len(data.managed) > 1 else ""
        lines = [
            f"{rank}. <@{s.user_id}>: current {s.current}, longest {s.longest}, {s.total} answers"
            for rank, s in enumerate(program.leaderboard[:20], start=1)
        ]
        if program.hidden_count:
            lines.append(f"…plus {program.hidden_count} people who keep their streaks private.")
        blocks.extend(_sections(f"*Streak leaderboard{title}*\n" + ("\n".join(lines) or "No answers yet.")))
        participation = "\n".join(
            f"• {d.day.isoformat()}: {d.answered} answered ({_title(d.question)})" for d in program.recent[:10]
        )
        blocks.extend(_sections(f"*Participation per drill{title}*\n" + (participation or "No drills yet.")))
    return _view(View(type="home", blocks=blocks[: View.blocks_max_length]))


def digest_message(
    *,
    program: str,
    channel: str,
    first: date,
    last: date,
    drills: Sequence[tuple[date, Question | None, int]],
    active: int,
    grew: Sequence[str],
    broke: Sequence[str],
    private_changes: int,
    weakest: Sequence[tuple[str, float]],
    missed: Sequence[tuple[str, int, int]] = (),
) -> Message:
    header = f"Weekly drill digest: {program} ({first.isoformat()} to {last.isoformat()})"
    participation = "\n".join(f"• {day.isoformat()}: {n} answered ({_title(q)})" for day, q, n in drills)
    mentions = ", ".join(f"<@{u}>" for u in grew[:30]) or "nobody"
    lost = ", ".join(f"<@{u}>" for u in broke[:30]) or "nobody"
    private = f" (plus {private_changes} changes of people who keep their streaks private)" if private_changes else ""
    weak = ", ".join(f"{escape(c)} ({score:.1f}/2)" for c, score in weakest) or "no self-ratings yet"
    body = (
        f"*{escape(header)}* in <#{channel}>\n\n"
        f"*Participation per drill*\n{participation or 'No drills this week.'}\n\n"
        f"*Active people:* {active}\n"
        f"*Streaks grew:* {mentions}\n*Streaks broken:* {lost}{private}\n\n"
        f"*Weakest categories* (team self-ratings, 0 = missed, 2 = nailed): {weak}\n\n"
        f"*Least-covered key points* (from the team's checklists, counts only)\n"
        + ("\n".join(f"• {escape(point)}: missed {n} of {asked}" for point, n, asked in missed) or "No checklists yet.")
    )
    return _message(escape(header), [_header("Weekly drill digest"), *_sections(body)])


def combine(parts: Sequence[tuple[str | None, Message]]) -> Message:
    """Several messages as one (e.g. a leaderboard per program), each under its name, within the limits."""
    if len(parts) == 1 and parts[0][0] is None:
        return parts[0][1]
    blocks: list[Block] = []
    for name, message in parts:
        if name:
            blocks.append(_header(name))
        blocks.extend(Block.parse_all(message["blocks"]))
    return _message(" / ".join(str(m["text"]) for _, m in parts), blocks)


# -- words for the drill loop's results (the services return values; these are what people read) -----

SEALED_FORM_REFUSALS = {
    "gone": "That drill no longer exists.",
    "closed": "This drill is closed; the guidance is in its thread.",
}
SEALED_SUBMIT_ERRORS = {
    "empty": "Write an answer first.",
    "gone": "That drill no longer exists.",
    "closed": "Too late: this drill closed and answers are locked.",
}


def rating_saved(rating: str) -> str:
    return f"Saved: *{dict(RATE_CHOICES)[rating]}*. Your ratings per category are on the drillbot Home tab."


def snooze_reply(until: date, *, stored: bool) -> str:
    if not stored:
        return f"{until.isoformat()} is in the past; snooze until a later date."
    return f"Snoozed until {until.isoformat()}: drills you miss until then won't break your streak."


def resume_reply(ended: bool) -> str:
    return "Welcome back: drills count for your streak again." if ended else "You were not snoozed."


def privacy_reply(private: bool) -> str:
    if private:
        return "Done: you are off the leaderboard (managers see a count, not your name). You still drill as usual."
    return "Done: you are back on the leaderboard."


# -- the key-point checklist (a DM after the reveal) ----------------------------------------------------

CHECKLIST_BLOCK = "checklist"
CHECKLIST_INPUT = "checklist_ticks"
CHECKLIST_SAVE = "checklist_save"


def thread_link(channel: str, ts: str | None) -> str:
    return f"https://slack.com/archives/{channel}/p{(ts or '').replace('.', '')}"


def checklist_message(
    question: Question,
    *,
    drill_id: int,
    channel: str,
    thread_ts: str | None,
    ticks: Mapping[int, bool],
    grade: Any = None,
    saved: bool = False,
) -> Message:
    """The private checklist: the drill's key points, pre-ticked with what is stored (or the grader's view)."""
    points = list(question.key_points)
    if ticks:
        chosen = {i for i, covered in ticks.items() if covered}
    elif grade is not None:
        chosen = set(grade.covered)
    else:
        chosen = set()
    indexed = [
        (i, Option(value=str(i), text=MarkdownTextObject(text=_truncate(escape(point), 150))))
        for i, point in enumerate(points[:10])  # Slack's limit for one checkboxes element
    ]
    initial = [option for i, option in indexed if i in chosen]
    element = CheckboxesElement(
        action_id=CHECKLIST_INPUT, options=[option for _i, option in indexed], initial_options=initial or None
    )
    blocks: list[Block] = [
        _header("Your drill, privately"),
        _section(f"*{escape(question.title)}*\n<{thread_link(channel, thread_ts)}|The drill's thread>"),
        _section("*Which of these did your answer cover?* Only you see this."),
        ActionsBlock(block_id=CHECKLIST_BLOCK, elements=[element]),
    ]
    if grade is not None and not ticks:
        blocks.append(
            _context(
                f":robot_face: *The grader's opinion* (pre-ticked above; correct it if you disagree)\n"
                f"*Strength:* {escape(grade.strength)}\n*To improve:* {escape(grade.improve)}"
            )
        )
    done = ":white_check_mark: Saved. Your coverage is on the drillbot Home tab." if saved else ""
    blocks.append(_actions("checklist_save", _button("Save", CHECKLIST_SAVE, str(drill_id), "primary")))
    if done:
        blocks.append(_context(done))
    return _message(f"Your checklist for: {question.title}", blocks)


def coverage_lines(coverage: Mapping[str, float], missed: Sequence[tuple[str, int, int]]) -> list[str]:
    weakest_first = sorted(coverage.items(), key=lambda item: (item[1], item[0]))
    lines = [f"• {escape(c)}: {round(share * 100)}% of key points" for c, share in weakest_first]
    if missed:
        lines.append("*Key points you miss most*")
        lines.extend(f"• {escape(point)} (missed {n} of {asked})" for point, n, asked in missed)
    return lines


def feedback_reply(enabled: bool) -> str:
    if enabled:
        return "Done: after each reveal you get a private checklist of the key points, to tick what you covered."
    return "Done: no more checklist DMs, and nothing of yours is sent to a grader. `feedback on` brings them back."


CHECKLIST_REPLIES = {
    "not_yours": "Only people who answered this drill have a checklist for it.",
    "gone": "That drill no longer exists.",
}
