"""bot/domain/streaks.py: streaks follow drills, not calendar days."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.streaks import DrillRef, Streak, compute_streaks, rank


def closed(*ids: int) -> list[DrillRef]:
    return [DrillRef(i, is_open=False) for i in ids]


def test_days_without_drills_never_break_a_streak() -> None:
    # Drill ids 1..5 posted Mon..Fri, then 6..10 the next week; the weekend (and a holiday that simply had
    # no drill) is not in the sequence at all.
    drills = closed(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    result = compute_streaks(drills, {"UALICE": range(1, 11)})
    assert result["UALICE"] == Streak("UALICE", current=10, longest=10, total=10)


def test_a_missed_closed_drill_resets_the_current_streak() -> None:
    drills = closed(1, 2, 3, 4, 5)
    result = compute_streaks(drills, {"U1": [1, 2, 3, 5]})
    assert result["U1"] == Streak("U1", current=1, longest=3, total=4)


def test_missing_the_last_closed_drill_leaves_current_at_zero() -> None:
    result = compute_streaks(closed(1, 2, 3), {"U1": [1, 2]})
    assert result["U1"] == Streak("U1", current=0, longest=2, total=2)


def test_an_open_unanswered_drill_does_not_break_the_current_streak() -> None:
    drills = [*closed(1, 2, 3), DrillRef(4, is_open=True)]
    result = compute_streaks(drills, {"U1": [1, 2, 3]})
    assert result["U1"] == Streak("U1", current=3, longest=3, total=3)


def test_an_open_answered_drill_counts() -> None:
    drills = [*closed(1, 2, 3), DrillRef(4, is_open=True)]
    result = compute_streaks(drills, {"U1": [1, 2, 3, 4], "U2": [4]})
    assert result["U1"] == Streak("U1", current=4, longest=4, total=4)
    assert result["U2"] == Streak("U2", current=1, longest=1, total=1)


def test_the_same_drill_closing_unanswered_then_breaks_it() -> None:
    answered = {"U1": [1, 2, 3]}
    while_open = compute_streaks([*closed(1, 2, 3), DrillRef(4, is_open=True)], answered)
    after_close = compute_streaks(closed(1, 2, 3, 4), answered)
    assert while_open["U1"].current == 3
    assert after_close["U1"].current == 0
    assert after_close["U1"].longest == 3


def test_longest_is_the_best_run_ever() -> None:
    drills = closed(*range(1, 12))
    answered = {"U1": [1, 2, 4, 5, 6, 7, 8, 10, 11]}  # runs of 2, 5, 2
    assert compute_streaks(drills, answered)["U1"] == Streak("U1", current=2, longest=5, total=9)


def test_total_counts_every_answered_drill() -> None:
    drills = closed(1, 2, 3, 4, 5, 6)
    answered = {"U1": [1, 3, 5], "U2": [6]}
    result = compute_streaks(drills, answered)
    assert result["U1"].total == 3
    assert result["U2"].total == 1


def test_answers_are_counted_once_even_if_listed_twice() -> None:
    result = compute_streaks(closed(1, 2), {"U1": [1, 1, 2, 2]})
    assert result["U1"] == Streak("U1", current=2, longest=2, total=2)


def test_users_with_zero_answers_are_not_included() -> None:
    result = compute_streaks(closed(1, 2), {"UNONE": [], "UOTHER": [99], "U1": [2]})
    assert set(result) == {"U1"}


def test_no_drills_no_streaks() -> None:
    assert compute_streaks([], {"U1": [1]}) == {}
    assert compute_streaks(closed(1), {}) == {}


def test_rank_orders_by_current_then_longest_then_total_then_user() -> None:
    streaks = [
        Streak("UE", current=1, longest=9, total=20),
        Streak("UB", current=3, longest=3, total=3),
        Streak("UA", current=3, longest=5, total=5),
        Streak("UD", current=3, longest=3, total=9),
        Streak("UC", current=3, longest=3, total=3),
        Streak("UF", current=0, longest=12, total=40),
    ]
    assert [s.user_id for s in rank(streaks)] == ["UA", "UD", "UB", "UC", "UE", "UF"]


def test_rank_is_deterministic_regardless_of_input_order() -> None:
    streaks = [Streak(f"U{i}", current=i % 3, longest=i % 5, total=i % 7) for i in range(30)]
    assert rank(streaks) == rank(list(reversed(streaks))) == rank(sorted(streaks, key=lambda s: s.total))


# -- property: compute_streaks equals an independent reference ---------------------------------------


def reference_streaks(drills: Sequence[DrillRef], answered: Mapping[str, Iterable[int]]) -> dict[str, Streak]:
    """Written independently: mark each drill A (answered), M (missed & closed) or skip it (open and not
    answered), then read the runs of A off the resulting string."""
    result = {}
    for user, ids in answered.items():
        mine = set(ids)
        marks = "".join("A" if d.id in mine else "M" for d in drills if d.id in mine or not d.is_open)
        total = marks.count("A")
        if total == 0:
            continue
        runs = [len(run) for run in marks.split("M")]
        result[user] = Streak(user, current=runs[-1], longest=max(runs), total=total)
    return result


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[DrillRef], dict[str, list[int]]]:
    count = draw(st.integers(min_value=0, max_value=40))
    # Drill ids increase in posting order but with gaps (other channels' drills, deleted rows).
    ids = sorted(draw(st.sets(st.integers(min_value=1, max_value=200), min_size=count, max_size=count)))
    # Mostly closed drills; the last one or two may be open, and occasionally one in the middle too.
    drills = [
        DrillRef(i, is_open=draw(st.booleans()) if n >= count - 2 else draw(st.integers(0, 9)) == 0)
        for n, i in enumerate(ids)
    ]
    users = draw(st.lists(st.sampled_from(["UA", "UB", "UC", "UD", "UE"]), unique=True, max_size=5))
    answered = {}
    for user in users:
        rate = draw(st.sampled_from([0.0, 0.3, 0.7, 0.95, 1.0]))
        mine = [i for i in ids if draw(st.floats(0, 1)) < rate] if ids else []
        # A few ids that are not drills of this sequence (another channel): they must be ignored.
        mine += draw(st.lists(st.integers(min_value=201, max_value=220), max_size=2))
        answered[user] = draw(st.permutations(mine))
    return drills, answered


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_compute_streaks_matches_the_reference(history: tuple[list[DrillRef], dict[str, list[int]]]) -> None:
    drills, answered = history
    assert compute_streaks(drills, answered) == reference_streaks(drills, answered)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_streak_invariants(history: tuple[list[DrillRef], dict[str, list[int]]]) -> None:
    drills, answered = history
    for streak in compute_streaks(drills, answered).values():
        assert 0 <= streak.current <= streak.longest <= streak.total <= len(drills)
        assert streak.total >= 1
    ranked = rank(compute_streaks(drills, answered).values())
    keys = [(-s.current, -s.longest, -s.total, s.user_id) for s in ranked]
    assert keys == sorted(keys)
