"""What every step of the drill loop shares: its collaborators, the programs, and how a step holds a claim.

`Loop` is built once per running bot and handed to each service (posting, revealing, live message,
answers, streaks, people). It owns no step itself; it answers "which program is this channel", "which
question did this drill ask" (its stored copy), and runs a step under a renewed lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from bot.domain.claims import LEASE, Owner, can_take_over
from bot.domain.programs import Program, load_programs, single_program
from bot.domain.questions import Question, QuestionBank
from bot.drills.port import SlackPort
from bot.errors import ConfigError
from bot.heartbeat import renewing
from bot.metrics import Metrics
from bot.settings import Settings
from storage import repo
from storage.db import Database
from storage.models import Drill

__all__ = ["Loop", "Snapshot", "build_programs", "describe_failure", "utcnow"]

log = logging.getLogger(__name__)
RENEW_EVERY = LEASE / 4


def utcnow() -> datetime:
    return datetime.now(UTC)


def describe_failure(exc: BaseException) -> str:
    """One line for an exception from a Slack call: the Slack error code, or the transport failure."""
    response = getattr(exc, "response", None)
    if response is not None and hasattr(response, "status_code"):
        error = response.get("error") if hasattr(response, "get") else None
        return f"HTTP {response.status_code}" + (f", {error}" if error else "")
    cause = getattr(exc, "reason", None) or exc.__cause__
    name = exc.__class__.__name__ + (f" ({cause.__class__.__name__})" if isinstance(cause, BaseException) else "")
    return f"{name}: cannot reach Slack at SLACK_API_URL" if isinstance(exc, OSError) else name


def build_programs(settings: Settings, bank: QuestionBank) -> list[Program]:
    """DRILL_PROGRAMS_FILE's programs, else one from the single-channel settings, else none."""
    if settings.drill_programs_file:
        return load_programs(
            settings.drill_programs_file,
            bank=bank,
            **settings.program_defaults,
        )
    if settings.drill_channel:
        return [single_program(channel=settings.drill_channel, schedule=settings.schedule)]
    return []


@dataclass(frozen=True)
class Snapshot:
    """The fields of a drill a step needs after its transaction has ended."""

    id: int
    channel: str
    day_start: datetime
    question_id: str
    question: str | None
    ts: str | None
    deadline: datetime
    status: str
    sealed: bool
    reveal_ts: str | None
    attempts: int

    @classmethod
    def of(cls, drill: Drill, tz: Any) -> Snapshot:
        day_start = datetime.combine(drill.day, time(0), tzinfo=tz).astimezone(UTC)
        return cls(
            drill.id,
            drill.channel,
            day_start,
            drill.question_id,
            drill.question,
            drill.ts,
            drill.deadline,
            drill.status,
            drill.sealed,
            drill.reveal_ts,
            drill.attempts,
        )


@dataclass
class Loop:
    settings: Settings
    bank: QuestionBank
    db: Database
    slack: SlackPort
    clock: Callable[[], datetime] = utcnow
    metrics: Metrics | None = None
    programs: list[Program] = field(default_factory=list)
    owner: Owner = field(default_factory=Owner)

    def __post_init__(self) -> None:
        self._by_channel = {p.channel: p for p in self.programs}

    # -- programs ----------------------------------------------------------------------------------

    def program_for(self, channel: str | None = None) -> Program:
        """The program of `channel`, or the only program when no channel is named."""
        if channel is not None:
            if channel in self._by_channel:
                return self._by_channel[channel]
            # A channel with drills but no program (any more): the single-channel settings apply.
            return single_program(channel=channel, schedule=self.settings.schedule)
        if len(self.programs) == 1:
            return self.programs[0]
        if not self.programs:
            self.settings.require("drill_channel")
        channels = ", ".join(f"{p.channel} ({p.name})" for p in self.programs)
        raise ConfigError(f"several drill programs: name one with --channel ({channels})")

    def tz(self, channel: str) -> Any:
        return self.program_for(channel).schedule.tz

    def is_manager(self, user_id: str, channel: str | None = None) -> bool:
        """DRILL_MANAGERS manage every program; a program's own managers manage its channel."""
        if user_id in self.settings.drill_managers:
            return True
        programs = [self._by_channel[channel]] if channel in self._by_channel else self.programs
        return any(user_id in p.managers for p in programs)

    def snapshot(self, drill: Drill) -> Snapshot:
        return Snapshot.of(drill, self.tz(drill.channel))

    # -- questions ---------------------------------------------------------------------------------

    def question_of(self, drill: Snapshot | Drill) -> Question:
        """The question the drill asked: its stored copy (whatever happened to the bank since)."""
        if drill.question:
            return Question.from_snapshot(drill.question, drill.question_id)
        # Only a drill written by code older than the copy has none; the bank may still know it.
        return self.bank.get(drill.question_id) or Question.from_snapshot(None, drill.question_id)

    # -- claims ------------------------------------------------------------------------------------

    def can_take_over(self, drill: Drill, now: datetime) -> bool:
        return can_take_over(
            claimed_by=drill.claimed_by, claimed_at=drill.claimed_at, attempts=drill.attempts, now=now, me=self.owner
        )

    @contextmanager
    def holding(self, drill_id: int) -> Iterator[None]:
        """Run a step that holds the drill's claim; Slack calls and retry waits inside it renew the lease."""
        last = [self.clock()]

        def renew() -> None:
            now = self.clock()
            if now - last[0] < RENEW_EVERY:
                return
            last[0] = now
            with self.db.transaction() as session:
                if not repo.renew(session, drill_id, owner=str(self.owner), now=now):
                    log.warning("drill %s: the claim was taken over while this step waited on Slack", drill_id)

        with renewing(renew):
            yield

    def lost(self, step: str, drill_id: int) -> None:
        """A conditional write found the claim gone: another process owns the step now; do nothing more."""
        log.warning("drill %s: lost the claim on step %s to another process; leaving it to them", drill_id, step)
        if self.metrics is not None:
            self.metrics.claim_lost(step)


def clean_text(text: Any) -> str:
    # PostgreSQL text cannot hold NUL; keep everything else as written.
    return str(text or "").replace("\x00", "\ufffd")


def slack_ts_to_datetime(ts: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
