"""`message` events: thread replies to a drill are answers; edits and deletes follow them.

The answer is written before Slack gets its 200 (a database write of a few milliseconds), so an
acknowledged answer is a stored answer; a failed write returns an error and Slack redelivers it. Over
HTTP, people's thread replies do not come here: the edge hands them to the answer intake
(`bot.intake`), which runs the same answer path in groups. This listener takes them over Socket Mode,
and takes edits and deletes always.
"""

from __future__ import annotations

from collections.abc import Callable
from logging import Logger
from typing import Any

from slack_bolt import BoltContext

from bot.drills import DrillService

__all__ = ["message_listener"]


def message_listener(service: DrillService) -> Callable[..., None]:
    def handle_message(event: dict[str, Any], context: BoltContext, logger: Logger) -> None:
        outcome = service.handle_message_event(event, context.bot_user_id)
        logger.debug("message %s in %s: %s", event.get("ts"), event.get("channel"), outcome)

    return handle_message
