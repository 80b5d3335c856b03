"""A recording stub of `bot.drills.port.SlackPort`: a transcript of what the drill loop sent, and faults.

Messages live per channel with their metadata, so `find_marked` answers like Slack's history. Faults are
queued per method (`fail_next`) or channel-wide (`archived`): a refusal raises `SlackSetupError` (nothing
stored), an uncertain failure raises `SlackTimeout` either before or after storing the message, and a
`Crash` (a BaseException, which no step catches) stands for the process dying at that call.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.drills.port import Marked
from bot.errors import SlackSetupError

REFUSALS = ("is_archived", "not_in_channel", "channel_not_found", "invalid_auth")
UNCERTAIN = ("timeout_after_store", "timeout", "http_500", "rate_limited")


class SlackTimeout(Exception):
    """The call's outcome is unknown (timeout, 5xx, a 429 whose retries ran out)."""


class Crash(BaseException):
    """The process dies during this call (after storing, when `stored`)."""


@dataclass
class Sent:
    channel: str
    ts: str
    message: Mapping[str, Any]
    thread_ts: str | None = None
    event_type: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class RecordingSlack:
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.updates: list[tuple[str, str, Mapping[str, Any]]] = []
        self.calls: list[str] = []
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.archived: set[str] = set()
        self._ts = 1_700_000_000.0

    # -- scripting -----------------------------------------------------------------------------

    def fail_next(self, method: str, kind: str) -> None:
        """method: post / update / find_marked; kind: a refusal, an uncertain failure, or crash[_after_store]."""
        self.faults[method].append(kind)

    def clear_faults(self) -> None:
        self.faults.clear()
        self.archived.clear()

    def _fault(self, method: str, channel: str) -> str | None:
        if channel in self.archived:
            return "is_archived"
        return self.faults[method].popleft() if self.faults[method] else None

    @staticmethod
    def _raise(kind: str) -> None:
        if kind in REFUSALS:
            raise SlackSetupError(f"Slack refused: {kind}")
        if kind.startswith("crash"):
            raise Crash(kind)
        raise SlackTimeout(kind)

    # -- the port ------------------------------------------------------------------------------

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
        self.calls.append("post")
        fault = self._fault("post", channel)
        if fault is not None and not fault.endswith("after_store"):
            self._raise(fault)
        self._ts += 1
        ts = f"{self._ts:.6f}"
        data = {"drill_id": drill_id, **(payload or {})} if event_type else {}
        self.sent.append(Sent(channel, ts, message, thread_ts, event_type, data))
        if fault is not None:
            self._raise(fault)
        return ts

    def open_dm(self, user_id: str) -> str:
        self.calls.append("open_dm")
        return "D" + user_id[1:]

    def update(self, channel: str, ts: str, message: Mapping[str, Any]) -> None:
        self.calls.append("update")
        fault = self._fault("update", channel)
        if fault is not None:
            self._raise(fault)
        self.updates.append((channel, ts, message))

    def find_marked(
        self, channel: str, *, event_type: str, drill_id: int, oldest: float, thread_ts: str | None = None
    ) -> list[Marked]:
        self.calls.append("find_marked")
        fault = self._fault("find_marked", channel)
        if fault is not None:
            self._raise(fault if not fault.endswith("after_store") else "timeout")
        return [
            Marked(s.ts, dict(s.payload))
            for s in self.sent
            if s.channel == channel
            and s.event_type == event_type
            and s.payload.get("drill_id") == drill_id
            and float(s.ts) >= oldest
            and (thread_ts is None or s.thread_ts == thread_ts)
        ]

    # -- transcript queries --------------------------------------------------------------------

    def marked(self, event_type: str, drill_id: int | None = None) -> list[Sent]:
        return [
            s for s in self.sent if s.event_type == event_type and (drill_id is None or s.payload.get("drill_id") == drill_id)
        ]
