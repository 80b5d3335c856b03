"""bot/domain/practice.py: which practice question comes next (unseen first, oldest seen, weak categories)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.practice import RATINGS, UNRATED_SCORE, category_scores, pick_practice
from bot.domain.questions import Question

T0 = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)


def question(qid: str, category: str = "caching") -> Question:
    return Question(
        id=qid,
        title=f"Question {qid}?",
        category=category,
        difficulty="medium",
        tags=("t",),
        guidance="Some guidance.",
        key_points=("a point",),
    )


def picks(candidates, *, seen=None, ratings=None, n=2000, seed=1234) -> Counter[str]:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for _ in range(n):
        picked = pick_practice(candidates, seen=seen or {}, ratings=ratings or {}, rng=rng)
        assert picked is not None
        counts[picked.id] += 1
    return counts


# -- category_scores ----------------------------------------------------------------------------------


def test_category_scores_average_the_ratings() -> None:
    ratings = {
        "caching": {"nailed": 3},
        "databases": {"missed": 2},
        "apis": {"nailed": 1, "missed": 1},
        "networks": {"partly": 4},
        "security": {"nailed": 1, "partly": 1, "missed": 2},
    }
    assert category_scores(ratings) == {
        "caching": 2.0,
        "databases": 0.0,
        "apis": 1.0,
        "networks": 1.0,
        "security": pytest.approx((2 + 1 + 0 + 0) / 4),
    }


def test_category_scores_skip_categories_without_ratings_and_unknown_keys() -> None:
    ratings = {"empty": {}, "zeros": {"nailed": 0, "missed": 0}, "odd": {"bogus": 5, "nailed": 1}}
    assert category_scores(ratings) == {"odd": 2.0}
    assert category_scores({}) == {}


def test_rating_values_and_unrated_score() -> None:
    assert RATINGS == {"nailed": 2, "partly": 1, "missed": 0}
    assert UNRATED_SCORE == 1.0


# -- pick_practice ------------------------------------------------------------------------------------


def test_no_candidates_gives_none() -> None:
    assert pick_practice([], seen={}, ratings={}) is None


def test_only_candidates_are_picked() -> None:
    candidates = [question("a"), question("b")]
    assert set(picks(candidates, n=200)) <= {"a", "b"}


def test_unseen_questions_come_first() -> None:
    candidates = [question("a"), question("b"), question("c"), question("d")]
    seen = {"a": T0, "c": T0 + timedelta(minutes=1)}
    counts = picks(candidates, seen=seen, n=500)
    assert set(counts) == {"b", "d"}, counts
    # Being unseen beats being weak: a missed-every-time category does not bring a seen question back.
    ratings = {"databases": {"missed": 10}}
    mixed = [question("a", "databases"), question("b", "caching")]
    assert set(picks(mixed, seen={"a": T0}, ratings=ratings, n=500)) == {"b"}


def test_a_single_unseen_question_is_always_the_pick() -> None:
    candidates = [question("a"), question("b"), question("c")]
    seen = {"a": T0, "b": T0 + timedelta(seconds=1)}
    assert picks(candidates, seen=seen, n=200) == Counter({"c": 200})


def test_when_all_are_seen_the_oldest_seen_quarter_is_the_pool() -> None:
    ids = [f"q{i}" for i in range(8)]
    candidates = [question(qid) for qid in ids]
    # Seen in a shuffled order: q5 longest ago, then q2; the rest more recently.
    order = ["q5", "q2", "q7", "q0", "q3", "q6", "q1", "q4"]
    seen = {qid: T0 + timedelta(minutes=n) for n, qid in enumerate(order)}
    counts = picks(candidates, seen=seen, n=1000)
    assert set(counts) == {"q5", "q2"}, counts
    assert min(counts.values()) > 300  # both are really in the pool


def test_with_fewer_than_four_all_seen_the_oldest_one_is_offered() -> None:
    candidates = [question("a"), question("b"), question("c")]
    seen = {"a": T0 + timedelta(hours=2), "b": T0, "c": T0 + timedelta(hours=1)}
    assert picks(candidates, seen=seen, n=200) == Counter({"b": 200})


def test_weak_categories_come_three_times_as_often_as_strong_ones() -> None:
    candidates = [question("weak", "databases"), question("strong", "caching")]
    ratings = {"databases": {"missed": 4}, "caching": {"nailed": 4}}
    counts = picks(candidates, ratings=ratings, n=2000)
    share = counts["weak"] / 2000
    # Weights 3 (score 0) vs 1 (score 2): 75 %. The binomial standard deviation is about 1 %.
    assert 0.70 < share < 0.80, counts


def test_unrated_categories_sit_between_weak_and_strong() -> None:
    candidates = [question("unrated", "apis"), question("strong", "caching")]
    counts = picks(candidates, ratings={"caching": {"nailed": 1}}, n=2000)
    share = counts["unrated"] / 2000
    assert 0.62 < share < 0.72, counts  # weights 2 vs 1: two thirds
    candidates = [question("weak", "databases"), question("unrated", "apis")]
    counts = picks(candidates, ratings={"databases": {"missed": 1}}, n=2000)
    share = counts["weak"] / 2000
    assert 0.55 < share < 0.65, counts  # weights 3 vs 2: 60 %


def test_weights_also_apply_within_the_oldest_seen_pool() -> None:
    ids_and_categories = [("w1", "databases"), ("s1", "caching")] + [(f"r{i}", "caching") for i in range(6)]
    candidates = [question(qid, cat) for qid, cat in ids_and_categories]
    seen = {qid: T0 + timedelta(minutes=n) for n, (qid, _) in enumerate(ids_and_categories)}
    ratings = {"databases": {"missed": 2}, "caching": {"nailed": 2}}
    counts = picks(candidates, seen=seen, ratings=ratings, n=2000)
    assert set(counts) == {"w1", "s1"}
    assert 0.70 < counts["w1"] / 2000 < 0.80, counts


def test_without_an_rng_a_pick_is_still_made() -> None:
    candidates = [question("a"), question("b")]
    assert pick_practice(candidates, seen={"a": T0}, ratings={}).id == "b"
