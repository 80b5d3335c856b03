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

    def snooze(self, user_id: str, until: date) -> str:
        today = self.today()
        if until < today:
            return f"{until.isoformat()} is in the past; snooze until a later date."
        with self.loop.db.transaction() as session:
            repo.add_snooze(session, user_id=user_id, first_day=today, last_day=until)
            for channel in repo.folded_since(session, today):  # today's drill already counted: rebuild
                repo.request_streak_rebuild(session, channel, self.loop.clock())
        return f"Snoozed until {until.isoformat()}: drills you miss until then won't break your streak."

    def resume(self, user_id: str) -> str:
        today = self.today()
        with self.loop.db.transaction() as session:
            ended = repo.end_snooze(session, user_id=user_id, today=today)
            for channel in repo.folded_since(session, today) if ended else []:  # today's drill counts again
                repo.request_streak_rebuild(session, channel, self.loop.clock())
        return "Welcome back: drills count for your streak again." if ended else "You were not snoozed."

    def snoozed_until(self, user_id: str) -> date | None:
        with self.loop.db.transaction() as session:
            return repo.active_snooze_end(session, user_id, self.today())

    def set_private(self, user_id: str, private: bool) -> str:
        with self.loop.db.transaction() as session:
            repo.set_private(session, user_id, private)
        if private:
            return "Done: you are off the leaderboard (managers see a count, not your name). You still drill as usual."
        return "Done: you are back on the leaderboard."

    def private_users(self) -> set[str]:
        with self.loop.db.transaction() as session:
            return repo.private_users(session)
