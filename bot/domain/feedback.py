"""Feedback on answers: key-point coverage, the weak spots, and what a grader may say.

Pure rules, no Slack and no database:
- coverage per category: ticked key points over key points asked (self-ratings from before the checklist
  stay stored and are shown beside it, and still weigh practice);
- the key points a person (or a team) most often misses;
- the grader's answer, validated: the covered indices must be in range and unique, and the two sentences
  non-empty and short. Anything else is discarded.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Grade",
    "category_coverage",
    "most_missed",
    "parse_grade",
]

MAX_SENTENCE = 300


@dataclass(frozen=True)
class Tick:
    """One key point of one answered drill, as the person ticked it."""

    category: str
    key_point: str
    covered: bool


def category_coverage(ticks: Iterable[Tick]) -> dict[str, float]:
    """Share of key points covered per category (0..1)."""
    covered: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    for tick in ticks:
        asked[tick.category] += 1
        covered[tick.category] += tick.covered
    return {c: covered[c] / asked[c] for c in asked if asked[c]}


def most_missed(ticks: Iterable[Tick], *, limit: int = 3) -> list[tuple[str, int, int]]:
    """(key point, times missed, times asked), the most missed first; only key points missed at least once."""
    missed: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    for tick in ticks:
        asked[tick.key_point] += 1
        missed[tick.key_point] += not tick.covered
    ranked = sorted((k for k in missed if missed[k]), key=lambda k: (-missed[k] / asked[k], -missed[k], k))
    return [(k, missed[k], asked[k]) for k in ranked[:limit]]


@dataclass(frozen=True)
class Grade:
    """The grader's view of one answer: which key points it covered, one strength, one thing to improve."""

    covered: tuple[int, ...]
    strength: str
    improve: str

    def to_json(self) -> str:
        return json.dumps({"covered": list(self.covered), "strength": self.strength, "improve": self.improve})

    @classmethod
    def from_json(cls, text: str | None) -> Grade | None:
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        covered = data.get("covered") if isinstance(data, dict) else None
        if not isinstance(covered, list):
            return None
        # Validated when it arrived; the stored copy only needs its own shape back.
        return parse_grade(data, key_points=max([i for i in covered if isinstance(i, int)] + [-1]) + 1)


def parse_grade(data: Any, *, key_points: int) -> Grade | None:
    """A grader response (already parsed JSON) as a Grade, or None when it is not one we can trust."""
    if not isinstance(data, dict):
        return None
    covered, strength, improve = data.get("covered"), data.get("strength"), data.get("improve")
    if not isinstance(covered, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in covered):
        return None
    if len(set(covered)) != len(covered) or any(not 0 <= i < key_points for i in covered):
        return None
    sentences = []
    for text in (strength, improve):
        if not isinstance(text, str):
            return None
        text = " ".join(text.split())
        if not text or len(text) > MAX_SENTENCE:
            return None
        sentences.append(text)
    return Grade(tuple(sorted(covered)), sentences[0], sentences[1])
