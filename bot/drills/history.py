"""What people did, read back: recent drills with the question they asked, ratings, practice picks.

The views (Home tab, `stats`, the digest, practice buttons) read through this service instead of the
database: each past drill comes with its stored question copy, and practice picks from the current bank.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bot.domain.practice import pick_practice
from bot.domain.questions import Question
from bot.drills.loop import Loop
from storage import repo

__all__ = ["History", "PastDrill"]


@dataclass(frozen=True)
class PastDrill:
    id: int
    day: date
    question: Question
    answered: int
    revealed: bool


class History:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def recent(self, channel: str, *, limit: int = 10) -> list[PastDrill]:
        """The channel's latest posted drills, newest first, each with the question it asked."""
        with self.loop.db.transaction() as session:
            result = []
            for drill in repo.recent_drills(session, channel, limit=limit):
                revealed = drill.reveal_ts is not None
                count = drill.answer_count if revealed else repo.answerer_count(session, drill.id)
                result.append(PastDrill(drill.id, drill.day, self.loop.question_of(drill), count, revealed))
        return result

    def between(self, channel: str, first: date, last: date) -> list[PastDrill]:
        """Posted drills from `first` to `last` (inclusive), oldest first, with how many answered each."""
        with self.loop.db.transaction() as session:
            drills = repo.drills_between(session, channel, first, last)
            return [
                PastDrill(
                    d.id, d.day, self.loop.question_of(d), repo.answerer_count(session, d.id), d.reveal_ts is not None
                )
                for d in drills
            ]

    def ratings(self, user_id: str) -> dict[str, dict[str, int]]:
        """The person's self-ratings, counted per category and rating."""
        with self.loop.db.transaction() as session:
            return repo.ratings_by_category(session, user_id)

    def team_ratings(self) -> dict[str, dict[str, int]]:
        with self.loop.db.transaction() as session:
            return repo.team_ratings(session)

    def practice_question(self, question_id: str) -> Question | None:
        """A question of the current bank (practice never uses a drill's stored copy)."""
        return self.loop.bank.get(question_id)

    def next_practice(self, user_id: str, terms: list[str], *, missed: set[str] | None = None) -> Question | None:
        """The practice pick (see bot.domain.practice), remembered as seen. `missed`: question ids whose
        key points the person missed in a checklist (offered again first)."""
        now = self.loop.clock()
        with self.loop.db.transaction() as session:
            seen = repo.practice_seen(session, user_id)
            ratings = repo.ratings_by_category(session, user_id)
            question = pick_practice(
                self.loop.bank.matching(terms), seen=seen, ratings=ratings, missed=frozenset(missed or ())
            )
            if question is not None and user_id:
                repo.record_practice_view(session, user_id=user_id, question_id=question.id, now=now)
        return question
