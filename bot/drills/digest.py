"""The weekly digest for managers (DRILL_DIGEST, a crontab): one DM each, once per slot.

Per program: participation per drill over the last 7 days, how many people took part, streak changes
(whose streak grew, who lost one; private people only as counts), and the categories the team rated
weakest. Once per slot, program and manager across replicas and restarts (a claim row each; a DM that
Slack refused is released and retried on the next tick); a slot missed while the bot was down is still
sent within the hour after it (real elapsed time), and not later.

Slots are read in each program's own time zone and claimed by their local wall-clock time, so the hour
that repeats when DST ends is one slot, not two.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from croniter import croniter

from bot import blocks
from bot.domain.lifecycle import accepts_answer
from bot.domain.practice import category_scores
from bot.domain.programs import Program
from bot.domain.streaks import DrillRef, compute_streaks
from bot.drills.loop import Loop, describe_failure
from storage import repo

__all__ = ["Digest", "digest_slot"]

log = logging.getLogger(__name__)
CATCH_UP = timedelta(hours=1)
WEEK = timedelta(days=7)


def digest_slot(crontab: str, tz: Any, now: datetime) -> str | None:
    """The local wall-clock key of the DRILL_DIGEST slot that is due at `now` in zone `tz`, if any.

    Due means: the slot's instant has passed, by less than CATCH_UP of real time (compared in UTC; aware
    datetimes in one zone subtract as wall-clock times, which is wrong across a DST change).
    """
    # The first slot after (now - CATCH_UP), walked forward in local time: a wall-clock `get_prev` from now
    # misses a slot whose wall-clock time is later than now's when DST has just set the clocks back.
    slots = croniter(crontab, (now - CATCH_UP).astimezone(tz))
    slot: datetime | None = None
    while (candidate := slots.get_next(datetime)).astimezone(UTC) <= now.astimezone(UTC):
        slot = candidate  # the latest slot within the catch-up hour
    if slot is None:
        return None
    return slot.strftime("%Y-%m-%dT%H:%M")


class Digest:
    """The weekly digest step: which slot is due, the claim per manager, and the message."""

    def __init__(self, loop: Loop, *, feedback: Any = None) -> None:
        self.loop = loop
        self.feedback = feedback  # the team's least-covered key points, when given

    def send_due(self) -> int:
        """Scheduler entry: DM the digest to every manager when a DRILL_DIGEST slot has come; returns DMs sent."""
        crontab = self.loop.settings.drill_digest
        if not crontab or not self.loop.programs:
            return 0
        now = self.loop.clock()
        sent = 0
        for program in self.loop.programs:
            slot = digest_slot(crontab, program.schedule.tz, now)
            if slot is None:
                continue
            message: blocks.Message | None = None
            for manager in sorted(self.loop.settings.drill_managers | program.managers):
                with self.loop.db.transaction() as session:
                    if not repo.claim_digest(session, slot=slot, program=program.name, manager=manager, now=now):
                        continue  # sent already (or being sent by another replica)
                try:
                    message = message or self.message_for(program, now)
                    self.loop.slack.post(manager, message)  # a user ID as channel: the app's DM with them
                    sent += 1
                except Exception as exc:
                    why = describe_failure(exc)
                    log.warning("digest for %s not sent to a manager (%s); retrying", program.name, why)
                    with self.loop.db.transaction() as session:
                        repo.release_digest(session, slot=slot, program=program.name, manager=manager)
        if sent:
            log.info("weekly digest sent (%d DMs)", sent)
        return sent

    def message_for(self, program: Program, now: datetime) -> blocks.Message:
        today = now.astimezone(program.schedule.tz).date()
        first = today - timedelta(days=6)
        with self.loop.db.transaction() as session:
            week = repo.drills_between(session, program.channel, first, today)
            before_week = repo.drills_between(session, program.channel, date(1970, 1, 1), first)
            earlier = [d for d in before_week if d.day < first]
            all_drills = earlier + week
            answered = repo.answered_in(session, [d.id for d in all_drills])
            snoozes = repo.snoozes_by_user(session)
            counts = {d.id: repo.answerer_count(session, d.id) for d in week}
            private = repo.private_users(session)
            ratings = repo.team_ratings(session)
        is_open = {d.id: accepts_answer(d.status, d.deadline, now) for d in all_drills}
        before = compute_streaks([DrillRef(d.id, is_open[d.id], d.day) for d in earlier], answered, snoozes=snoozes)
        after = compute_streaks([DrillRef(d.id, is_open[d.id], d.day) for d in all_drills], answered, snoozes=snoozes)
        active = {user for user, ids in answered.items() if ids & {d.id for d in week}}
        grew = sorted(u for u, s in after.items() if s.current > (before[u].current if u in before else 0))
        broke = sorted(u for u, s in after.items() if u in before and before[u].current > 0 and s.current == 0)
        weakest = sorted(category_scores(ratings).items(), key=lambda item: (item[1], item[0]))[:3]
        return blocks.digest_message(
            program=program.name,
            channel=program.channel,
            first=first,
            last=today,
            drills=[(d.day, self.loop.question_of(d), counts[d.id]) for d in week],
            active=len(active),
            grew=[u for u in grew if u not in private],
            broke=[u for u in broke if u not in private],
            private_changes=sum(1 for u in grew + broke if u in private),
            weakest=weakest,
            missed=self.feedback.team_missed(program.channel, first) if self.feedback is not None else [],
        )
