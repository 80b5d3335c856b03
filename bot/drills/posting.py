"""Posting the day's drill: the POSTING step of the lifecycle (see `bot.domain.lifecycle`).

A drill row is inserted (claimed) before Slack is called, so one channel gets one drill a day across
processes; the row stores the question as asked and the deadline the message shows. An uncertain failure
releases the claim; the next attempt first looks in Slack for the message by its metadata and adopts it
(with the deadline the message carries), so nothing is posted twice and the enforced deadline is the one
shown. A refusal (archived channel, bot removed) is POST_FAILED: no message exists, and only then does
`drillbot post` post again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot import blocks
from bot.domain.lifecycle import POSTED, DrillState
from bot.domain.rotation import next_question
from bot.drills.loop import Loop, Snapshot, describe_failure
from bot.drills.port import DRILL_EVENT
from bot.errors import ConfigError, SlackSetupError
from bot.logs import bind
from storage import repo
from storage.models import Drill

__all__ = ["PostOutcome", "PostResult", "Poster"]

log = logging.getLogger(__name__)


class _Unsure(Exception):
    """Slack refused to show the channel's history: whether an earlier attempt posted is unknown."""


class PostResult(StrEnum):
    POSTED = "posted"
    ADOPTED = "adopted"  # an earlier attempt had posted it; found through its metadata
    EXISTS = "exists"
    IN_PROGRESS = "in_progress"
    RETRYING = "retrying"
    FAILED = "failed"
    LOST = "lost"  # another process took the step over


@dataclass(frozen=True)
class PostOutcome:
    result: PostResult
    drill_id: int | None = None
    question_id: str | None = None
    ts: str | None = None
    detail: str = ""


class Poster:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def post_if_due(self) -> list[PostOutcome]:
        """Scheduler entry: post each program's drill when its schedule says so, or finish a pending post."""
        outcomes = []
        for program in self.loop.programs:
            now = self.loop.clock()
            with self.loop.db.transaction() as session:
                drill = repo.drill_for_day(session, program.channel, program.schedule.local_date(now))
                pending = drill is not None and drill.status == DrillState.POSTING
            if (drill is None and program.schedule.is_due(now)) or pending:
                # The day decided on, not whatever day it is by the time the post starts: across midnight
                # that would post the next day's drill, scheduled or not.
                outcomes.append(self.post_today(program.channel, now=now))
        return outcomes

    def post_today(
        self, channel: str | None = None, *, retry_failed: bool = False, now: datetime | None = None
    ) -> PostOutcome:
        """Post today's drill unless the channel already has one today (in the program's time zone).

        `retry_failed`: post again a drill Slack refused (POST_FAILED), e.g. after the operator fixed it.
        `now`: the moment "today" is taken from (the scheduler's decision), else the clock's.
        A drill that has a message is never posted again, whatever state its reveal is in.
        """
        loop = self.loop
        program = loop.program_for(channel)
        channel = program.channel
        now = loop.clock() if now is None else now
        day = program.schedule.local_date(now)
        deadline = now + program.schedule.window
        owner = str(loop.owner)
        with loop.db.transaction() as session:
            drill = repo.drill_for_day(session, channel, day)
            if drill is None:
                ids = program.question_ids(loop.bank)
                if not ids:
                    raise ConfigError(f"no question in the bank fits the program of {channel}")
                used = [loop.bank.current_id(qid) for qid in repo.used_question_ids(session, channel)]
                question = loop.bank.get(next_question(ids, used, channel=channel, day=day))
                assert question is not None
                drill = repo.insert_drill(
                    session,
                    channel=channel,
                    day=day,
                    question_id=question.id,
                    question=question.snapshot(),
                    deadline=deadline,
                    owner=owner,
                    now=now,
                    sealed=loop.settings.drill_sealed,
                )
                if drill is None:
                    return PostOutcome(PostResult.IN_PROGRESS, detail="another process is posting today's drill")
                reconcile = False
            elif drill.status == DrillState.POSTING and loop.can_take_over(drill, now):
                # A fresh deadline (the full window), stored with the claim: it is the one the message shows.
                if not repo.claim(session, drill, to=DrillState.POSTING, owner=owner, now=now, deadline=deadline):
                    return PostOutcome(PostResult.IN_PROGRESS, drill.id, drill.question_id)
                reconcile = True
            elif drill.status == DrillState.POST_FAILED and retry_failed:
                if not repo.claim(session, drill, to=DrillState.POSTING, owner=owner, now=now, deadline=deadline):
                    return PostOutcome(PostResult.IN_PROGRESS, drill.id, drill.question_id)
                reconcile = True  # an uncertain attempt may have come before the refusal
            else:
                return _existing(drill)
            # Every branch that goes on stored `deadline` with its claim: the message shows exactly that.
            snapshot = replace(Snapshot.of(drill, program.schedule.tz), deadline=deadline)
        with bind(drill_id=snapshot.id), loop.holding(snapshot.id):  # every log line carries the drill id
            return self._deliver(snapshot, reconcile=reconcile)

    def _deliver(self, drill: Snapshot, *, reconcile: bool) -> PostOutcome:
        loop = self.loop
        owner = str(loop.owner)
        deadline = drill.deadline
        try:
            if reconcile:
                # A refusal here is no proof that nothing was posted (an earlier attempt may have been):
                # it is handled as an uncertain failure below, never as POST_FAILED.
                found = self._find(drill)
                if found:
                    shown = _deadline_of(found[0].payload) or deadline
                    return self._finish(drill, found[0].ts, shown, PostResult.ADOPTED)
            question = loop.question_of(drill)
            ts = loop.slack.post(
                drill.channel,
                blocks.drill_message(question, deadline=deadline, sealed=drill.sealed, drill_id=drill.id),
                event_type=DRILL_EVENT,
                drill_id=drill.id,
                payload={"deadline": int(deadline.timestamp())},
            )
        except SlackSetupError as exc:
            log.error("drill %s: not posted: %s", drill.id, exc)
            with loop.db.transaction() as session:
                won = repo.finish(
                    session, drill.id, source=DrillState.POSTING, to=DrillState.POST_FAILED, owner=owner,
                    error=str(exc)[:255],
                )
            if not won:
                loop.lost("post", drill.id)
            return PostOutcome(PostResult.FAILED, drill.id, drill.question_id, detail=str(exc))
        except Exception as exc:
            detail = describe_failure(exc)
            log.warning("drill %s: posting not confirmed (%s); will check Slack and retry", drill.id, detail)
            log.debug("drill %s: posting failure", drill.id, exc_info=True)
            with loop.db.transaction() as session:
                repo.release(session, drill.id, owner=owner, now=loop.clock(), error=detail)
            return PostOutcome(PostResult.RETRYING, drill.id, drill.question_id, detail=detail)
        return self._finish(drill, ts, deadline, PostResult.POSTED)

    def _find(self, drill: Snapshot) -> list[Any]:
        try:
            return self.loop.slack.find_marked(
                drill.channel, event_type=DRILL_EVENT, drill_id=drill.id, oldest=drill.day_start.timestamp()
            )
        except SlackSetupError as exc:
            raise _Unsure(str(exc)) from exc

    def _finish(self, drill: Snapshot, ts: str, deadline: datetime, result: PostResult) -> PostOutcome:
        loop = self.loop
        with loop.db.transaction() as session:
            won = repo.finish(
                session, drill.id, source=DrillState.POSTING, to=DrillState.OPEN, owner=str(loop.owner),
                ts=ts, posted_at=loop.clock(), deadline=deadline, error=None,
            )
        if not won:
            # Another process took the step over; it will find this message by its metadata and adopt it.
            loop.lost("post", drill.id)
            return PostOutcome(PostResult.LOST, drill.id, drill.question_id, ts)
        if result == PostResult.ADOPTED:
            log.info("drill %s: adopted the message an earlier attempt posted (ts %s)", drill.id, ts)
        else:
            log.info("drill %s: posted question %s to %s (ts %s)", drill.id, drill.question_id, drill.channel, ts)
            if loop.metrics:
                loop.metrics.drill_posted(drill.channel)
        return PostOutcome(result, drill.id, drill.question_id, ts)


def _deadline_of(payload: object) -> datetime | None:
    value = payload.get("deadline") if isinstance(payload, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def _existing(drill: Drill) -> PostOutcome:
    if drill.status == DrillState.POSTING:
        return PostOutcome(PostResult.IN_PROGRESS, drill.id, drill.question_id, detail="being posted")
    if drill.status == DrillState.POST_FAILED:
        return PostOutcome(PostResult.FAILED, drill.id, drill.question_id, detail=drill.error or "")
    assert drill.status in POSTED
    return PostOutcome(PostResult.EXISTS, drill.id, drill.question_id, drill.ts)
