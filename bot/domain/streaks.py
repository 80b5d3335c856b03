"""Streaks: how many drills in a row a person answered.

The sequence is the channel's drills in the order they were posted, so days without a drill (weekends,
holidays, a paused schedule) never break a streak. A closed drill the person did not answer resets their
current streak to 0. A drill that is still open counts if they already answered it and is otherwise
ignored: nobody loses a streak before the answer window closes. Neither do people who snoozed
(`/interview-question snooze until DATE`) for drills on their snoozed days. `longest` is the best run ever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

__all__ = ["DrillRef", "Streak", "compute_streaks", "rank"]


@dataclass(frozen=True)
class DrillRef:
    id: int
    is_open: bool
    day: date | None = None  # needed only to excuse snoozed people


@dataclass(frozen=True)
class Streak:
    user_id: str
    current: int
    longest: int
    total: int


def compute_streaks(
    drills: Sequence[DrillRef],
    answered: Mapping[str, Iterable[int]],
    start: Mapping[str, Streak] | None = None,
    snoozes: Mapping[str, Sequence[tuple[date, date]]] | None = None,
) -> dict[str, Streak]:
    """Streaks after `drills` (in order), given who answered which (user -> drill ids).

    `start` is the state before those drills (the stored state as of the last folded-in drill); without
    it, `drills` is the whole history. Both the stored state and every leaderboard use this one rule.
    """
    start = start or {}
    snoozes = snoozes or {}
    result: dict[str, Streak] = {}
    for user in start.keys() | answered.keys():
        mine = set(answered.get(user, ()))
        before = start.get(user)
        current, longest, total = (before.current, before.longest, before.total) if before else (0, 0, 0)
        for drill in drills:
            if drill.id in mine:
                current += 1
                total += 1
                longest = max(longest, current)
            elif not drill.is_open and not _snoozed(snoozes.get(user, ()), drill.day):
                current = 0
        if total:
            result[user] = Streak(user, current, longest, total)
    return result


def _snoozed(periods: Sequence[tuple[date, date]], day: date | None) -> bool:
    return day is not None and any(first <= day <= last for first, last in periods)


def rank(streaks: Iterable[Streak]) -> list[Streak]:
    """Leaderboard order: current streak, then longest, then total answers, then user id for stability."""
    return sorted(streaks, key=lambda s: (-s.current, -s.longest, -s.total, s.user_id))
