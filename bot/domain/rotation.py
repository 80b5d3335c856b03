"""Which question a channel gets next.

Rule: a question not yet used in the channel; once every question has been used, a new cycle starts
(least-used first). Among the equally-used ones the pick is random but seeded by channel and day, so a
retry or a second replica computing the same day's drill picks the same question.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date

__all__ = ["next_question"]


def next_question(bank_ids: Sequence[str], used_ids: Iterable[str], *, channel: str, day: date) -> str:
    if not bank_ids:
        raise ValueError("the question bank is empty")
    uses = Counter(qid for qid in used_ids if qid in set(bank_ids))
    fewest = min(uses.get(qid, 0) for qid in bank_ids)
    candidates = [qid for qid in bank_ids if uses.get(qid, 0) == fewest]
    return random.Random(f"{channel}:{day.isoformat()}").choice(candidates)
