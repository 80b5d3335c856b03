"""Feedback on every answer: after the reveal, each person who answered gets a private checklist of the
drill's key points ("which did your answer cover?"), pre-ticked by the grader when one is configured.

The send is a step of its own, like the reveal: one claim row per drill and person (so one DM, whatever
the scheduler, replicas or restarts do), released after an uncertain failure, taken over once its lease
runs out, and reconciled by looking for the DM's metadata in the person's DM channel (opened once with
`conversations.open` and remembered) before sending again. People who turned feedback off get nothing,
and nothing of theirs is sent to the grader.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from bot import blocks
from bot.domain.claims import can_take_over
from bot.domain.feedback import Grade, Tick, category_coverage, most_missed
from bot.drills.loop import Loop, describe_failure
from bot.drills.port import FEEDBACK_EVENT
from bot.grader import GRADER_CONCURRENCY, Grader
from bot.logs import bind
from storage import repo
from storage.models import Drill

__all__ = ["FEEDBACK_WINDOW", "Feedback", "FeedbackSummary", "SaveResult"]

log = logging.getLogger(__name__)
# Drills revealed longer ago than this get no checklist (a bot that was down for weeks does not flood DMs).
FEEDBACK_WINDOW = timedelta(days=3)


class SaveResult(StrEnum):
    SAVED = "saved"
    NOT_YOURS = "not_yours"
    GONE = "gone"


@dataclass(frozen=True)
class FeedbackSummary:
    """A person's coverage per category (0..1) and the key points they most often miss."""

    coverage: dict[str, float]
    missed: list[tuple[str, int, int]]
    checklists: list[tuple[date, str, str | None, str | None]]  # day, title, DM channel, DM ts


class Feedback:
    def __init__(self, loop: Loop, *, grader: Grader | None = None) -> None:
        self.loop = loop
        self.grader = grader

    # -- the step -----------------------------------------------------------------------------------

    def send_due(self) -> int:
        """Scheduler entry: send (or finish sending) the checklists of recently revealed drills."""
        loop = self.loop
        now = loop.clock()
        owner = str(loop.owner)
        todo: list[tuple[Drill, str]] = []
        with loop.db.transaction() as session:
            for drill, user in repo.feedback_due(session, now - FEEDBACK_WINDOW):
                wanted = repo.feedback_enabled(session, user) and bool(loop.question_of(drill).key_points)
                status = "sending" if wanted else "skipped"
                claimed = repo.claim_feedback(
                    session, drill_id=drill.id, user_id=user, owner=owner, now=now, status=status
                )
                if claimed and wanted:
                    todo.append((drill, user))
            for row in repo.feedback_in_flight(session):
                if (row.drill_id, row.user_id) in {(d.id, u) for d, u in todo}:
                    continue
                if can_take_over(claimed_by=row.claimed_by, claimed_at=row.claimed_at, attempts=row.attempts,
                                 now=now, me=loop.owner) and repo.retake_feedback(session, row, owner=owner, now=now):
                    taken = session.get(Drill, row.drill_id)
                    if taken is not None:
                        todo.append((taken, row.user_id))
        if self.grader is None or len(todo) < 2:
            return sum(self._send_bound(drill, user) for drill, user in todo)
        # Grading waits on the network: answers are graded (and their checklists sent) a few at a time, so
        # a slow grader delays one person's checklist, not everyone's after it.
        with ThreadPoolExecutor(max_workers=GRADER_CONCURRENCY, thread_name_prefix="feedback") as pool:
            return sum(pool.map(lambda item: self._send_bound(*item), todo))

    def _send_bound(self, drill: Drill, user: str) -> int:
        with bind(drill_id=drill.id):
            return self._send(drill, user)

    def _send(self, drill: Drill, user: str) -> int:
        loop = self.loop
        owner = str(loop.owner)
        question = loop.question_of(drill)
        with loop.db.transaction() as session:
            row = repo.feedback_row(session, drill.id, user)
            grade = Grade.from_json(row.graded) if row is not None else None
            dm_channel = repo.dm_channel_of(session, user)
            answer = repo.answer_text(session, drill.id, user)
            ticks = repo.ticks_of(session, drill.id, user)
            attempts = row.attempts if row is not None else 1
            within_cap = repo.graded_count(session, drill.id) < loop.settings.drill_grader_max_per_drill
        try:
            if dm_channel is None:
                dm_channel = loop.slack.open_dm(user)
                with loop.db.transaction() as session:
                    repo.set_dm_channel(session, user, dm_channel)
            elif attempts > 1:  # an earlier attempt may have sent it: look in the DM first
                found = loop.slack.find_marked(
                    dm_channel, event_type=FEEDBACK_EVENT, drill_id=drill.id,
                    oldest=(drill.revealed_at or drill.deadline).timestamp(),
                )
                if found:
                    return self._finish(drill, user, dm_channel, found[0].ts, grade)
            if grade is None and self.grader is not None and within_cap:
                grade = self.grader.grade(question, answer)
            message = blocks.checklist_message(
                question, drill_id=drill.id, channel=drill.channel, thread_ts=drill.ts, ticks=ticks, grade=grade
            )
            ts = loop.slack.post(dm_channel, message, event_type=FEEDBACK_EVENT, drill_id=drill.id)
            channel = dm_channel
        except Exception as exc:  # a refusal or an uncertain failure: retried after a delay, looked for first
            log.warning("drill %s: checklist for a person not sent (%s); retrying", drill.id, describe_failure(exc))
            with loop.db.transaction() as session:
                repo.release_feedback(session, drill_id=drill.id, user_id=user, owner=owner, now=loop.clock())
            return 0
        return self._finish(drill, user, channel, ts, grade)

    def _finish(self, drill: Drill, user: str, channel: str, ts: str, grade: Grade | None) -> int:
        loop = self.loop
        with loop.db.transaction() as session:
            won = repo.finish_feedback(
                session, drill_id=drill.id, user_id=user, owner=str(loop.owner), channel=channel, ts=ts,
                graded=grade.to_json() if grade else None, now=loop.clock(),
            )
        if not won:
            loop.lost("feedback", drill.id)
            return 0
        return 1

    # -- people -------------------------------------------------------------------------------------

    def save(self, drill_id: int, user_id: str, covered: set[int]) -> SaveResult:
        """Store what the person ticked (the rest of the drill's key points count as missed)."""
        loop = self.loop
        with loop.db.transaction() as session:
            drill = session.get(Drill, drill_id)
            if drill is None:
                return SaveResult.GONE
            if not repo.has_answered(session, drill_id, user_id):
                return SaveResult.NOT_YOURS
            count = len(loop.question_of(drill).key_points)
            repo.save_ticks(
                session, drill_id=drill_id, user_id=user_id,
                covered={i: i in covered for i in range(count)}, now=loop.clock(),
            )
        return SaveResult.SAVED

    def checklist(self, drill_id: int, user_id: str, *, saved: bool = False) -> blocks.Message | None:
        """The person's checklist message as it stands (after a save)."""
        loop = self.loop
        with loop.db.transaction() as session:
            drill = session.get(Drill, drill_id)
            if drill is None:
                return None
            row = repo.feedback_row(session, drill_id, user_id)
            ticks = repo.ticks_of(session, drill_id, user_id)
            question = loop.question_of(drill)
            grade = Grade.from_json(row.graded) if row is not None else None
            return blocks.checklist_message(
                question, drill_id=drill_id, channel=drill.channel, thread_ts=drill.ts, ticks=ticks, grade=grade,
                saved=saved,
            )

    def set_enabled(self, user_id: str, enabled: bool) -> None:
        with self.loop.db.transaction() as session:
            repo.set_feedback(session, user_id, enabled)

    def enabled(self, user_id: str) -> bool:
        with self.loop.db.transaction() as session:
            return repo.feedback_enabled(session, user_id)

    def summary(self, user_id: str) -> FeedbackSummary:
        """The person's own coverage and weak key points (nobody else's)."""
        loop = self.loop
        with loop.db.transaction() as session:
            rows = repo.ticks_with_drills(session, user_id=user_id)
            checklists = [
                (drill.day, loop.question_of(drill).title, row.channel, row.ts)
                for row, drill in repo.feedback_rows_of(session, user_id, limit=5)
            ]
        ticks = self._ticks(rows)
        # What the checklists say; self-ratings from before them stay stored and on show beside it.
        return FeedbackSummary(category_coverage(ticks), most_missed(ticks), checklists)

    def team_missed(self, channel: str, since: date, *, limit: int = 3) -> list[tuple[str, int, int]]:
        """The team's least-covered key points since `since` (counts only, nobody named)."""
        with self.loop.db.transaction() as session:
            rows = repo.ticks_with_drills(session, since=since, channel=channel)
        return most_missed(self._ticks(rows), limit=limit)

    def missed_question_ids(self, user_id: str) -> set[str]:
        """Current-bank ids of questions the person missed a key point of (practice offers them first)."""
        # A read (no write lock: every practice request asks, beside the answers being stored).
        with self.loop.db.read() as session:
            stored_ids = repo.missed_question_ids(session, user_id=user_id)
        return {self.loop.bank.current_id(question_id) for question_id in stored_ids}

    def _ticks(self, rows: list[tuple[Drill, int, bool]]) -> list[Tick]:
        ticks = []
        for drill, index, covered in rows:
            question = self.loop.question_of(drill)
            if index < len(question.key_points):
                ticks.append(Tick(question.category, question.key_points[index], covered))
        return ticks
