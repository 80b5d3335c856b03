"""The live drill message and the reminder: cosmetic updates of an OPEN drill, never a lifecycle step.

"N answered" on the drill message is refreshed when the count changed, at most every few seconds per
drill (a conditional write claims each refresh); one quiet reminder goes into the thread DRILL_REMINDER
before the deadline (claimed once, never retried, so it can never be doubled).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot import blocks
from bot.domain.lifecycle import DrillState, accepts_answer
from bot.drills.loop import Loop, describe_failure
from storage import repo
from storage.models import Drill

__all__ = ["LIVE_COUNT_INTERVAL", "LiveMessage"]

log = logging.getLogger(__name__)
LIVE_COUNT_INTERVAL = timedelta(seconds=5)
_PAST_DEADLINE = (DrillState.REVEALING, DrillState.SEALING, DrillState.CLOSED)


class LiveMessage:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def refresh_live_counts(self) -> int:
        """Update "N answered" on open drill messages whose count changed, at most every few seconds each."""
        loop = self.loop
        now = loop.clock()
        with loop.db.transaction() as session:
            candidates = [
                (loop.snapshot(d), n, d)
                for d, n in repo.open_drills_with_counts(session)
                if n != d.count_shown
                and (d.count_updated_at is None or now - d.count_updated_at >= LIVE_COUNT_INTERVAL)
                and accepts_answer(d.status, d.deadline, now)
            ]
            claimed = [(snap, n) for snap, n, d in candidates if repo.claim_count_refresh(session, d, count=n, now=now)]
        for drill, count in claimed:
            try:
                question = loop.question_of(drill)
                message = blocks.drill_message(
                    question, deadline=drill.deadline, answered=count, sealed=drill.sealed, drill_id=drill.id
                )
                loop.slack.update(drill.channel, str(drill.ts), message)
                # The update may have landed after the reveal closed the drill (a 429 waited out, a slow
                # reply): then put the closed rendering back, so the message never looks open again.
                with loop.db.transaction() as session:
                    row = session.get(Drill, drill.id)
                    closed_count: int | None = None
                    if row is not None and row.status in _PAST_DEADLINE:
                        revealed = row.status != DrillState.REVEALING
                        closed_count = row.answer_count if revealed else repo.answerer_count(session, row.id)
                if closed_count is not None:
                    closed = blocks.drill_message(question, deadline=drill.deadline, closed=True, answered=closed_count)
                    loop.slack.update(drill.channel, str(drill.ts), closed)
            except Exception as exc:  # cosmetic; the next change retries
                log.warning("drill %s: live count not updated (%s)", drill.id, describe_failure(exc))
        return len(claimed)

    def send_reminders(self) -> int:
        """DRILL_REMINDER before the deadline: one quiet thread reply per drill, mentioning nobody."""
        loop = self.loop
        reminder = loop.settings.drill_reminder
        if reminder is None:
            return 0
        now = loop.clock()
        sent = 0
        with loop.db.transaction() as session:
            due = [
                (loop.snapshot(d), n)
                for d, n in repo.open_drills_with_counts(session)
                if d.reminded_at is None
                and d.deadline - reminder <= now
                and accepts_answer(d.status, d.deadline, now)
                and (d.posted_at is None or d.deadline - reminder > d.posted_at)
                and repo.claim_reminder(session, d.id, now)
            ]
        for drill, count in due:
            try:
                loop.slack.post(
                    drill.channel,
                    blocks.reminder_message(left=drill.deadline - now, answered=count),
                    thread_ts=drill.ts,
                )
                sent += 1
            except Exception as exc:  # one quiet nudge: never a second attempt that could double it
                log.warning("drill %s: reminder not posted (%s)", drill.id, describe_failure(exc))
        return sent
