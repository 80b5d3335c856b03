"""Practice buttons: "Show guidance" and "Another one" (in a slash-command reply or the Home modal),
and "Practice a question" on the Home tab."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient

from bot import blocks
from bot.domain.questions import Question
from bot.drills import DrillService
from bot.home import next_practice_question

__all__ = ["another_one", "home_practice", "show_guidance"]


def _show(
    question: Question, body: dict[str, Any], client: WebClient, respond: Respond, *, filters: str, guidance: bool
) -> None:
    """Replace the practice card where the button was: the Home modal, or the ephemeral reply."""
    view = body.get("view")
    if isinstance(view, dict) and view.get("id"):
        client.views_update(view_id=view["id"], view=blocks.practice_modal(question, show_guidance=guidance))
    else:
        message = blocks.practice_message(question, filters=filters, show_guidance=guidance)
        respond(replace_original=True, **message)


def show_guidance(service: DrillService) -> Callable[..., None]:
    def reveal_practice_guidance(
        body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond
    ) -> None:
        question_id, _, filters = str(action.get("value") or "").partition("|")
        question = service.history.practice_question(question_id)
        if question is not None:
            _show(question, body, client, respond, filters=filters, guidance=True)

    return reveal_practice_guidance


def another_one(service: DrillService) -> Callable[..., None]:
    def next_practice(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond) -> None:
        filters = str(action.get("value") or "")
        user_id = str((body.get("user") or {}).get("id") or "")
        question = next_practice_question(service, user_id, filters.split())
        if question is not None:
            _show(question, body, client, respond, filters=filters, guidance=False)

    return next_practice


def home_practice(service: DrillService) -> Callable[..., None]:
    def open_practice(body: dict[str, Any], client: WebClient) -> None:
        user_id = str((body.get("user") or {}).get("id") or "")
        question = next_practice_question(service, user_id, [])
        if question is not None:
            client.views_open(trigger_id=body["trigger_id"], view=blocks.practice_modal(question))

    return open_practice
