"""The key-point checklist in a person's DM: ticking boxes and Save both store what is ticked."""

from __future__ import annotations

from collections.abc import Callable
from logging import Logger
from typing import Any

from slack_sdk import WebClient

from bot import blocks
from bot.drills import DrillService
from bot.drills.feedback import SaveResult

__all__ = ["checklist_saver"]


def _ticked(body: dict[str, Any]) -> set[int] | None:
    """The boxes ticked in the message, from the payload's state (None when it has none)."""
    values = ((body.get("state") or {}).get("values") or {}).get(blocks.CHECKLIST_BLOCK) or {}
    element = values.get(blocks.CHECKLIST_INPUT)
    if not isinstance(element, dict):
        return None
    chosen = element.get("selected_options") or []
    return {int(o["value"]) for o in chosen if isinstance(o, dict) and str(o.get("value", "")).isdigit()}


def _drill_id(body: dict[str, Any]) -> int | None:
    for action in body.get("actions") or []:
        value = str(action.get("value") or "") if isinstance(action, dict) else ""
        if value.isdigit():
            return int(value)
    # A checkbox change carries no value of ours: the Save button's, elsewhere in the same message, does.
    for block in (body.get("message") or {}).get("blocks") or []:
        for element in block.get("elements") or [] if isinstance(block, dict) else []:
            if isinstance(element, dict) and element.get("action_id") == blocks.CHECKLIST_SAVE:
                value = str(element.get("value") or "")
                return int(value) if value.isdigit() else None
    return None


def checklist_saver(service: DrillService) -> Callable[..., None]:
    def save_checklist(body: dict[str, Any], client: WebClient, logger: Logger) -> None:
        user_id = str((body.get("user") or {}).get("id") or "")
        drill_id, ticked = _drill_id(body), _ticked(body)
        if not user_id or drill_id is None or ticked is None:
            return
        result = service.feedback.save(drill_id, user_id, ticked)
        channel = str((body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id") or "")
        ts = str((body.get("container") or {}).get("message_ts") or "")
        saved = any(a.get("action_id") == blocks.CHECKLIST_SAVE for a in body.get("actions") or [])
        if result != SaveResult.SAVED:
            client.chat_postEphemeral(channel=channel, user=user_id, text=blocks.CHECKLIST_REPLIES[result])
            return
        if saved and channel and ts:
            message = service.feedback.checklist(drill_id, user_id, saved=True)
            if message is not None:
                client.chat_update(channel=channel, ts=ts, **message)
        logger.debug("checklist of drill %s saved", drill_id)

    return save_checklist
