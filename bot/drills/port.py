"""The Slack port: the few Web API calls the drill loop makes, as a typed interface.

`bot.slack_api.SlackGateway` implements it over slack-sdk; tests implement it with a recording stub
that can fail any call. Failures the loop distinguishes:

- `bot.errors.SlackSetupError`: Slack refused for a reason no retry fixes until a person acts (archived
  channel, bot not in the channel, bad token). Nothing was posted.
- any other exception: uncertain (timeout, 5xx, connection reset). The message may have been posted;
  the next attempt looks for it by its metadata before posting again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["DRILL_EVENT", "FEEDBACK_EVENT", "REVEAL_EVENT", "SEALED_EVENT", "Marked", "SlackPort"]

# Message metadata event types: how a later attempt recognises what an earlier one posted.
DRILL_EVENT = "drillbot_drill"
REVEAL_EVENT = "drillbot_reveal"
SEALED_EVENT = "drillbot_sealed"
FEEDBACK_EVENT = "drillbot_feedback"


@dataclass(frozen=True)
class Marked:
    """A message drillbot posted, found again by its metadata."""

    ts: str
    payload: Mapping[str, Any] = field(default_factory=dict)


class SlackPort(Protocol):
    def post(
        self,
        channel: str,
        message: Mapping[str, Any],
        *,
        thread_ts: str | None = None,
        event_type: str | None = None,
        drill_id: int | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> str:
        """chat.postMessage; returns the message ts. `event_type`/`drill_id`/`payload` become its metadata."""
        ...

    def open_dm(self, user_id: str) -> str:
        """conversations.open: the ID of the app's DM channel with this person."""
        ...

    def update(self, channel: str, ts: str, message: Mapping[str, Any]) -> None:
        """chat.update."""
        ...

    def find_marked(
        self, channel: str, *, event_type: str, drill_id: int, oldest: float, thread_ts: str | None = None
    ) -> list[Marked]:
        """Every message posted for this drill with this event type since `oldest` (in the thread, if given)."""
        ...
