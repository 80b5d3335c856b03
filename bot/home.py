"""What a person sees of their own practice: the Home tab, `stats`, and the next practice question.

Privacy rule, in one place: everything here is about the viewer only, except the manager section of the
Home tab, which `home_view_for` adds only for users in DRILL_MANAGERS.
"""

from __future__ import annotations

from typing import Any

from bot import blocks
from bot.domain.practice import pick_practice
from bot.domain.questions import Question
from bot.domain.streaks import Streak
from bot.drills import DrillService
from storage import repo

__all__ = ["home_view_for", "is_manager", "next_practice_question", "own_streak", "stats_for"]


def is_manager(service: DrillService, user_id: str) -> bool:
    return user_id in service.settings.drill_managers


def own_streak(service: DrillService, user_id: str) -> Streak | None:
    return next((s for s in service.leaderboard() if s.user_id == user_id), None)


def stats_for(service: DrillService, user_id: str) -> blocks.Message:
    with service.db.transaction() as session:
        ratings = repo.ratings_by_category(session, user_id)
    return blocks.stats_message(own_streak(service, user_id), ratings)


def next_practice_question(service: DrillService, user_id: str, terms: list[str]) -> Question | None:
    """The practice pick (see bot.domain.practice), remembered as seen."""
    now = service.clock()
    with service.db.transaction() as session:
        seen = repo.practice_seen(session, user_id)
        ratings = repo.ratings_by_category(session, user_id)
        question = pick_practice(service.bank.matching(terms), seen=seen, ratings=ratings)
        if question is not None and user_id:
            repo.record_practice_view(session, user_id=user_id, question_id=question.id, now=now)
    return question


def home_view_for(service: DrillService, user_id: str) -> dict[str, Any]:
    channel = service.settings.drill_channel
    manager = is_manager(service, user_id)
    leaderboard = service.leaderboard() if channel else []
    recent: list[blocks.RecentDrill] = []
    with service.db.transaction() as session:
        ratings = repo.ratings_by_category(session, user_id)
        if channel:
            for drill in repo.recent_drills(session, channel, limit=10):
                revealed = drill.status == "closed"
                count = drill.answer_count if revealed else repo.answerer_count(session, drill.id)
                recent.append(blocks.RecentDrill(drill.day, service.bank.get(drill.question_id), count, revealed))
    data = blocks.HomeData(
        streak=next((s for s in leaderboard if s.user_id == user_id), None),
        recent=recent,
        ratings=ratings,
        leaderboard=leaderboard if manager else None,
    )
    return blocks.home_view(data)
