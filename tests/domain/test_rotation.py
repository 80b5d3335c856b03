"""bot/domain/rotation.py: every question once before any repeats, deterministic per channel and day."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest

from bot.domain.rotation import next_question

BANK = [f"q{i:02d}" for i in range(1, 31)]
START = date(2026, 1, 5)


def simulate(bank: list[str], days: int, *, channel: str = "C1", used: list[str] | None = None) -> list[str]:
    history = list(used or [])
    picks = []
    for n in range(days):
        pick = next_question(bank, history, channel=channel, day=START + timedelta(days=n))
        picks.append(pick)
        history.append(pick)
    return picks


def test_no_repeat_before_the_bank_is_exhausted() -> None:
    picks = simulate(BANK, len(BANK))
    assert sorted(picks) == sorted(BANK)  # a full cycle: every question exactly once


def test_starts_over_after_a_full_cycle_and_again_uses_each_once() -> None:
    picks = simulate(BANK, 3 * len(BANK))
    for cycle in range(3):
        chunk = picks[cycle * len(BANK) : (cycle + 1) * len(BANK)]
        assert sorted(chunk) == sorted(BANK), f"cycle {cycle} repeated a question"


def test_the_order_differs_between_cycles_and_channels() -> None:
    picks = simulate(BANK, 2 * len(BANK))
    assert picks[: len(BANK)] != picks[len(BANK) :]
    assert simulate(BANK, len(BANK), channel="C1") != simulate(BANK, len(BANK), channel="C2")


def test_least_used_first_after_an_uneven_history() -> None:
    bank = ["a", "b", "c", "d"]
    used = ["a", "a", "b", "b", "c", "d", "d"]  # c is the least used
    assert next_question(bank, used, channel="C1", day=START) == "c"
    assert next_question(bank, [*used, "c", "c"], channel="C1", day=START) in {"a", "b", "d"}


def test_deterministic_per_channel_and_day() -> None:
    used = BANK[:5]
    first = next_question(BANK, used, channel="C1", day=START)
    # A retry or another replica computing the same drill gets the same question.
    for _ in range(20):
        assert next_question(BANK, list(used), channel="C1", day=START) == first
    # The order of the history does not matter, only the counts.
    assert next_question(BANK, list(reversed(used)), channel="C1", day=START) == first
    assert first not in used


def test_different_days_and_channels_are_not_all_the_same_pick() -> None:
    by_day = {next_question(BANK, [], channel="C1", day=START + timedelta(days=n)) for n in range(30)}
    by_channel = {next_question(BANK, [], channel=f"C{n}", day=START) for n in range(30)}
    assert len(by_day) > 5
    assert len(by_channel) > 5


def test_the_pick_is_spread_over_the_candidates() -> None:
    counts = Counter(next_question(BANK, [], channel="C1", day=START + timedelta(days=n)) for n in range(3000))
    assert set(counts) == set(BANK)


def test_ids_no_longer_in_the_bank_are_ignored() -> None:
    bank = ["a", "b", "c"]
    # Removed questions were used many times; they must neither be picked nor skew the cycle.
    used = ["gone", "gone", "old", "a", "b"]
    assert next_question(bank, used, channel="C1", day=START) == "c"
    only_removed = ["gone"] * 10
    assert next_question(bank, only_removed, channel="C1", day=START) == next_question(
        bank, [], channel="C1", day=START
    )


def test_after_the_bank_changes_new_questions_come_first_then_least_used() -> None:
    old_bank = BANK[:20]
    history = simulate(old_bank, 15)
    new_bank = BANK[10:]  # q01..q10 removed, q21..q30 added
    unused = [q for q in new_bank if q not in history]
    picks = simulate(new_bank, 2 * len(new_bank), used=history)
    # Questions never asked in this channel come first, each once.
    assert sorted(picks[: len(unused)]) == sorted(unused)
    # Every pick is one of the least-used questions of the current bank at that moment.
    uses = Counter(q for q in history if q in new_bank)
    for pick in picks:
        assert uses[pick] == min(uses[q] for q in new_bank)
        uses[pick] += 1
    assert max(uses.values()) - min(uses[q] for q in new_bank) <= 1


def test_a_one_question_bank_always_returns_it() -> None:
    assert simulate(["only"], 5) == ["only"] * 5


def test_an_empty_bank_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        next_question([], ["a"], channel="C1", day=START)
