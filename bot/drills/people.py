"""People's own choices: snoozing drills (a break that never breaks a streak) and leaving the leaderboard."""

from __future__ import annotations

from datetime import date

from bot.drills.loop import Loop
from storage import repo

__all__ = ["People"]


class People:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def today(self, channel: str | None = None) -> date:
        loop = self.loop
        program = loop.program_for(channel) if (channel or len(loop.programs) == 1) else None
        tz = program.schedule.tz if program else loop.settings.tz
        return loop.clock().astimezone(tz).date()

    def snooze(self, user_id: str, until: date) -> bool:
        """Snooze until `until` (inclusive); False when that date is already past."""
        today = self.today()
        if until < today:
            return False
        with self.loop.db.transaction() as session:
            repo.add_snooze(session, user_id=user_id, first_day=today, last_day=until)
            for channel in repo.folded_since(session, today):  # today's drill already counted: rebuild
                repo.request_streak_rebuild(session, channel, self.loop.clock())
        return True

    def resume(self, user_id: str) -> bool:
        """End the person's snooze; False when they were not snoozed."""
        today = self.today()
        with self.loop.db.transaction() as session:
            ended = repo.end_snooze(session, user_id=user_id, today=today)
            for channel in repo.folded_since(session, today) if ended else []:  # today's drill counts again
                repo.request_streak_rebuild(session, channel, self.loop.clock())
        return ended

    def snoozed_until(self, user_id: str) -> date | None:
        with self.loop.db.transaction() as session:
            return repo.active_snooze_end(session, user_id, self.today())

    def set_private(self, user_id: str, private: bool) -> None:
        with self.loop.db.transaction() as session:
            repo.set_private(session, user_id, private)

    def private_users(self) -> set[str]:
        with self.loop.db.transaction() as session:
            return repo.private_users(session)
