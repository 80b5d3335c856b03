"""What people see of themselves and, for managers, of the team: Home tab, `stats`, leaderboards, practice.

Privacy rules, in one place:
- everything shown to a person is about that person only, except for managers (DRILL_MANAGERS, or a
  program's managers for its channel), who also see the leaderboard and participation;
- people who opted out (`/interview-question private on`) appear on no leaderboard in Slack; managers
  see how many they are, never who.
"""

from __future__ import annotations

from typing import Any

from bot import blocks
from bot.domain.questions import Question
from bot.domain.streaks import Streak
from bot.drills import DrillService

__all__ = ["home_view_for", "next_practice_question", "own_streak", "public_leaderboard", "stats_for"]


def public_leaderboard(service: DrillService, channel: str | None = None) -> tuple[list[Streak], int]:
    """The leaderboard as managers see it in Slack: private people removed and counted."""
    streaks = service.leaderboard(channel)
    private = service.private_users()
    shown = [s for s in streaks if s.user_id not in private]
    return shown, len(streaks) - len(shown)


def own_streak(service: DrillService, user_id: str, channel: str | None = None) -> Streak | None:
    return next((s for s in service.leaderboard(channel) if s.user_id == user_id), None)


def stats_for(service: DrillService, user_id: str) -> blocks.Message:
    ratings = service.history.ratings(user_id)
    mine = service.feedback.summary(user_id)
    streak = own_streak(service, user_id) if service.programs else None
    return blocks.stats_message(
        streak, ratings, snoozed_until=service.snoozed_until(user_id), coverage=mine.coverage, missed=mine.missed
    )


def next_practice_question(service: DrillService, user_id: str, terms: list[str]) -> Question | None:
    """The practice pick (see bot.domain.practice), remembered as seen."""
    return service.history.next_practice(user_id, terms, missed=service.feedback.missed_question_ids(user_id))


def _recent(service: DrillService, channel: str) -> list[blocks.RecentDrill]:
    return [blocks.RecentDrill(d.day, d.question, d.answered, d.revealed) for d in service.history.recent(channel)]


def home_view_for(service: DrillService, user_id: str) -> dict[str, Any]:
    ratings = service.history.ratings(user_id)
    streaks: list[tuple[str, Streak | None]] = []
    recent: list[blocks.RecentDrill] = []
    managed: list[blocks.ManagedProgram] = []
    for program in service.programs:
        board = service.leaderboard(program.channel)
        streaks.append((program.name, next((s for s in board if s.user_id == user_id), None)))
        program_recent = _recent(service, program.channel)
        recent.extend(program_recent)
        if service.is_manager(user_id, program.channel):
            private = service.private_users()
            shown = [s for s in board if s.user_id not in private]
            managed.append(blocks.ManagedProgram(program.name, shown, len(board) - len(shown), program_recent))
    recent.sort(key=lambda d: d.day, reverse=True)
    # The first program the person takes part in leads; their other programs follow on one line each.
    mine = sorted(streaks, key=lambda item: item[1] is None)
    feedback = service.feedback.summary(user_id)
    data = blocks.HomeData(
        streak=mine[0][1] if mine else None,
        recent=recent,
        ratings=ratings,
        snoozed_until=service.snoozed_until(user_id),
        managed=managed,
        other_streaks=[(name, s) for name, s in mine[1:] if s is not None],
        coverage=feedback.coverage,
        missed=feedback.missed,
        checklists=feedback.checklists,
    )
    return blocks.home_view(data)
