"""`/interview-question [help | stats | categories | leaderboard | category/tag/difficulty ...]`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Respond

from bot import blocks
from bot.drills import DrillService
from bot.home import is_manager, next_practice_question, stats_for

__all__ = ["COMMAND", "command_responder", "reply_for"]

COMMAND = "/interview-question"


def reply_for(text: str, user_id: str, service: DrillService) -> blocks.Message:
    """The ephemeral reply to the command; the one place that reads its argument."""
    words = text.split()
    bank = service.bank
    if words and words[0].lower() == "help":
        return blocks.help_message(bank)
    if words and words[0].lower() == "leaderboard":
        if not is_manager(service, user_id):
            return blocks.refusal_message()
        return blocks.leaderboard_message(service.leaderboard())
    if words and words[0].lower() == "stats":
        return stats_for(service, user_id)
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
        message = reply_for(str(command.get("text") or ""), str(command.get("user_id") or ""), service)
        respond(response_type="ephemeral", replace_original=False, **message)

    return answer_command
