"""`/interview-question [help | stats | categories | leaderboard | category/tag/difficulty ...]`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from slack_bolt import Respond

from bot import blocks
from bot.blocks import COMMAND
from bot.drills import DrillService
from bot.home import next_practice_question, public_leaderboard, stats_for

__all__ = ["COMMAND", "command_responder", "reply_for"]


def _snooze(service: DrillService, user_id: str, words: list[str]) -> str:
    """`snooze until 2026-12-31` (or `snooze 2026-12-31`)."""
    if words and words[0].lower() == "until":
        words = words[1:]
    try:
        until = date.fromisoformat(words[0]) if len(words) == 1 else None
    except ValueError:
        until = None
    if until is None:
        return f"Use `{COMMAND} snooze until YYYY-MM-DD`, e.g. `{COMMAND} snooze until 2026-12-31`."
    return blocks.snooze_reply(until, stored=service.snooze(user_id, until))


def reply_for(text: str, user_id: str, service: DrillService, channel_id: str = "") -> blocks.Message:
    """The ephemeral reply to the command; the one place that reads its argument."""
    words = text.split()
    bank = service.bank
    if words and words[0].lower() == "help":
        return blocks.help_message(bank)
    first = words[0].lower() if words else ""
    if first == "leaderboard":
        # In a program's channel: that program. Elsewhere: every program the person manages.
        here = [p for p in service.programs if p.channel == channel_id] or service.programs
        mine = [p for p in here if service.is_manager(user_id, p.channel)]
        if not mine:
            return blocks.refusal_message()
        parts = []
        for program in mine:
            shown, hidden = public_leaderboard(service, program.channel)
            parts.append((program.name if len(mine) > 1 else None, blocks.leaderboard_message(shown, hidden=hidden)))
        return blocks.combine(parts)
    if first == "stats":
        return stats_for(service, user_id)
    if first == "snooze":
        return blocks.text_message(_snooze(service, user_id, words[1:]))
    if first == "resume":
        return blocks.text_message(blocks.resume_reply(service.resume(user_id)))
    if first == "private":
        choice = words[1].lower() if len(words) > 1 else ""
        if choice not in ("on", "off"):
            return blocks.text_message(f"Use `{COMMAND} private on` or `{COMMAND} private off`.")
        service.set_private(user_id, choice == "on")
        return blocks.text_message(blocks.privacy_reply(choice == "on"))
    if first == "feedback":
        choice = words[1].lower() if len(words) > 1 else ""
        if choice not in ("on", "off"):
            usage = f"Use `{COMMAND} feedback off` (no checklist DMs, nothing sent to a grader) or `on`."
            return blocks.text_message(usage)
        service.feedback.set_enabled(user_id, choice == "on")
        return blocks.text_message(blocks.feedback_reply(choice == "on"))
    if words and words[0].lower() == "categories":
        return blocks.categories_message(bank)
    unknown = bank.unknown_terms(words)
    if unknown:
        return blocks.unknown_filter_message(unknown, bank)
    question = next_practice_question(service, user_id, words)
    if question is None:
        return blocks.unknown_filter_message([], bank, no_match=True)
    return blocks.practice_message(question, filters=" ".join(w.lower() for w in words))


def command_responder(service: DrillService) -> Callable[..., None]:
    def answer_command(command: dict[str, Any], respond: Respond) -> None:
        message = reply_for(
            str(command.get("text") or ""),
            str(command.get("user_id") or ""),
            service,
            str(command.get("channel_id") or ""),
        )
        respond(response_type="ephemeral", replace_original=False, **message)

    return answer_command
