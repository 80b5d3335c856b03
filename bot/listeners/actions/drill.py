"""Buttons on drill messages: "Answer" (sealed drills) and the self-rating buttons under a reveal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient

from bot import blocks
from bot.drills import DrillService

__all__ = ["answer_opener", "rater"]


def _drill_id(action: dict[str, Any]) -> int | None:
    value = str(action.get("value") or "")
    return int(value) if value.isdigit() else None


def answer_opener(service: DrillService) -> Callable[..., None]:
    def open_answer_modal(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond) -> None:
        drill_id = _drill_id(action)
        user_id = str((body.get("user") or {}).get("id") or "")
        if drill_id is None or not user_id:
            return
        form = service.sealed_answer_form(drill_id, user_id)
        if not isinstance(form, tuple):
            respond(response_type="ephemeral", replace_original=False, text=blocks.SEALED_FORM_REFUSALS[form])
            return
        question, current = form
        client.views_open(
            trigger_id=body["trigger_id"], view=blocks.answer_modal(question, drill_id=drill_id, current=current)
        )

    return open_answer_modal


def rater(service: DrillService) -> Callable[..., None]:
    def rate_myself(body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        drill_id = _drill_id(action)
        user_id = str((body.get("user") or {}).get("id") or "")
        if drill_id is None or not user_id:
            return
        rating = str(action.get("action_id", "")).removeprefix(blocks.RATE_ACTION_PREFIX)
        refused = service.rate(drill_id, user_id, rating)
        text = refused if refused is not None else blocks.rating_saved(rating)
        respond(response_type="ephemeral", replace_original=False, text=text)

    return rate_myself
