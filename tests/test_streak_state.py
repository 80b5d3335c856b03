"""Incremental streaks: the stored state plus unfolded drills must equal a replay from scratch."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.questions import QuestionBank
from bot.domain.streaks import DrillRef, compute_streaks, rank
from bot.drills import DrillService
from bot.settings import Settings
from bot.slack_api import SlackGateway, make_client
from storage.db import Database
from storage.models import Answer, Drill, DrillStatus, StreakRebuild, StreakState
from tests.fakes.workspace import CHANNEL

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
USERS = ["UA", "UB", "UC", "UD"]


def _service(url: str) -> DrillService:
    db = Database(url)
    db.upgrade()
    settings = Settings(_env_file=None, drill_channel=CHANNEL, database_url=url)  # type: ignore[call-arg]
    slack = SlackGateway(make_client(token=None, base_url="http://127.0.0.1:9/api/"))
    return DrillService(settings=settings, bank=QuestionBank(questions=()), db=db, slack=slack, clock=lambda: NOW)


history = st.lists(
    st.tuples(st.sets(st.sampled_from(USERS)), st.booleans()),  # (who answered, fold after this drill closes)
    min_size=1,
    max_size=12,
)


def _replay(service: DrillService, drills: list[tuple[set[str], bool]], open_tail: int) -> list:
    """Insert the history, folding as drills close; the last `open_tail` drills stay open."""
    closed_count = len(drills) - open_tail
    ids: list[int] = []
    for index, (answerers, fold_now) in enumerate(drills):
        is_open = index >= closed_count
        with service.db.transaction() as session:
            drill = Drill(
                channel=CHANNEL,
                day=date(2026, 1, 1) + timedelta(days=index),
                question_id="q",
                status=DrillStatus.OPEN if is_open else DrillStatus.CLOSED,
                ts=f"{1700000000 + index}.000100",
                deadline=NOW + timedelta(hours=1) if is_open else NOW - timedelta(days=100 - index),
                answer_count=len(answerers),
                attempts=1,
            )
            session.add(drill)
            session.flush()
            ids.append(drill.id)
            for user in sorted(answerers):
                session.add(
                    Answer(drill_id=drill.id, channel=CHANNEL, message_ts=f"{index}.{user}", user_id=user,
                           text="x", deleted=False, created_at=NOW, updated_at=NOW)
                )
        if fold_now and not is_open:
            service.fold_streaks(CHANNEL)
    return ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drills=history, open_tail=st.integers(min_value=0, max_value=2), data=st.data())
def test_stored_plus_pending_equals_full_replay(tmp_path_factory, drills, open_tail, data):
    open_tail = min(open_tail, len(drills))
    url = f"sqlite:///{tmp_path_factory.mktemp('streaks') / 'db.sqlite'}"
    service = _service(url)
    try:
        ids = _replay(service, drills, open_tail)
        if data.draw(st.booleans()):
            service.fold_streaks(CHANNEL)
        refs = [DrillRef(i, index >= len(drills) - open_tail) for index, i in enumerate(ids)]
        answered: dict[str, set[int]] = {}
        for drill_id, (answerers, _fold) in zip(ids, drills, strict=True):
            for user in answerers:
                answered.setdefault(user, set()).add(drill_id)
        expected = rank(compute_streaks(refs, answered).values())
        assert service.leaderboard(CHANNEL) == expected
    finally:
        service.db.dispose()


def test_fold_stops_at_an_open_drill_and_is_idempotent(database_url):
    service = _service(database_url)
    try:
        ids = _replay(service, [({"UA"}, False), ({"UA", "UB"}, False), ({"UB"}, False)], open_tail=1)
        assert service.fold_streaks(CHANNEL) == 2  # the third drill is open: not folded
        assert service.fold_streaks(CHANNEL) == 0
        by_user = {s.user_id: s for s in service.leaderboard(CHANNEL)}
        assert (by_user["UA"].current, by_user["UA"].longest, by_user["UA"].total) == (2, 2, 2)
        # UB answered drill 2 and the open drill 3: the open drill extends the current streak.
        assert (by_user["UB"].current, by_user["UB"].total) == (2, 2)
        with service.db.transaction() as session:
            assert session.get(Drill, ids[2]).streak_applied is False
    finally:
        service.db.dispose()


def test_late_answer_to_a_folded_drill_rebuilds(database_url):
    service = _service(database_url)
    try:
        ids = _replay(service, [({"UA"}, True), (set(), True)], open_tail=0)
        assert {s.user_id: s.current for s in service.leaderboard(CHANNEL)} == {"UA": 0}
        with service.db.transaction() as session:
            drill = session.get(Drill, ids[1])
            assert drill.streak_applied
        # A redelivered reply written before the deadline arrives after the drill was folded in.
        late = {"type": "message", "channel": CHANNEL, "user": "UA", "text": "late", "thread_ts": drill.ts,
                "ts": f"{drill.deadline.timestamp() - 60:.6f}"}
        assert service.handle_message_event(late, "UBOT") == "answer recorded"
        with service.db.transaction() as session:  # the answer only asked for a rebuild
            assert session.get(Drill, ids[1]).streak_applied
            assert session.get(StreakRebuild, CHANNEL) is not None
        # The fold rebuilds the channel from its answers first, then folds both drills again.
        assert service.fold_streaks(CHANNEL) == 2
        with service.db.transaction() as session:
            assert session.get(StreakRebuild, CHANNEL) is None
            assert {(r.user_id, r.current, r.total) for r in session.query(StreakState)} == {("UA", 2, 2)}
        assert {s.user_id: (s.current, s.total) for s in service.leaderboard(CHANNEL)} == {"UA": (2, 2)}
    finally:
        service.db.dispose()


@pytest.mark.parametrize("channels", [[CHANNEL], ["COTHER1", "COTHER2"]])
def test_leaderboard_channel_defaults(tmp_path: Path, channels):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    service = _service(url)
    service.loop.settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    service.loop.programs, service.loop._by_channel = [], {}  # no DRILL_CHANNEL and no programs file
    try:
        for n, channel in enumerate(channels):
            with service.db.transaction() as session:
                session.add(Drill(channel=channel, day=date(2026, 1, 1 + n), question_id="q", status="closed",
                                  ts=f"17000000{n}.1", deadline=NOW, answer_count=0, attempts=1))
        if len(channels) == 1:
            assert service.leaderboard() == []
        else:
            from bot.errors import ConfigError

            with pytest.raises(ConfigError, match="--channel"):
                service.leaderboard()
    finally:
        service.db.dispose()
