"""Practice on demand: which question to offer a person next (a simple spaced-repetition rule).

1. Questions the person has not seen yet come first; once they have seen every matching question, the
   quarter seen longest ago is the pool.
2. Within the pool, a question's weight is `3 - score` of its category, where the score is the person's
   average self-rating there (missed = 0, partly = 1, nailed it = 2) and an unrated category scores 1.
   A category they keep missing is offered three times as often as one they always nail.
3. A question whose key points the person missed in a drill's checklist counts as not yet seen, and its
   weight doubles: practice brings back what they got wrong.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence, Set
from datetime import datetime

from bot.domain.questions import Question

__all__ = ["RATINGS", "category_scores", "pick_practice"]

RATINGS = {"nailed": 2, "partly": 1, "missed": 0}
UNRATED_SCORE = 1.0


def category_scores(ratings: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Average self-rating per category (0 = always missed, 2 = always nailed)."""
    scores: dict[str, float] = {}
    for category, counts in ratings.items():
        n = sum(counts.get(r, 0) for r in RATINGS)
        if n:
            scores[category] = sum(RATINGS[r] * counts.get(r, 0) for r in RATINGS) / n
    return scores


def pick_practice(
    candidates: Sequence[Question],
    *,
    seen: Mapping[str, datetime],
    ratings: Mapping[str, Mapping[str, int]],
    missed: Set[str] = frozenset(),
    rng: random.Random | None = None,
) -> Question | None:
    if not candidates:
        return None
    pool = [q for q in candidates if q.id not in seen or q.id in missed]
    if not pool:
        by_age = sorted(candidates, key=lambda q: seen[q.id])
        pool = by_age[: max(1, len(by_age) // 4)]
    scores = category_scores(ratings)
    weights = [(3.0 - scores.get(q.category, UNRATED_SCORE)) * (2.0 if q.id in missed else 1.0) for q in pool]
    return (rng or random.Random()).choices(pool, weights=weights, k=1)[0]
