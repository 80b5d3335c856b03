"""PostgreSQL concurrency of answers and streaks, with two threads (each its own connection).

- The fold/answer race: an answer to a drill commits while a fold of that drill runs. Before the lock
  order, the fold did not wait for the answer and could store streaks without it (and the answer, having
  read `streak_applied = false`, asked for no rebuild). Now the answer holds a share lock on its drill,
  the fold's UPDATE of that row waits, and then counts the answer.
- Rebuilding streaks (after a snooze or a late answer) and folding them take their locks in one order
  (drills rows, then streak_rebuilds, then streaks), so running both at once never deadlocks.

Skipped, saying why, when no PostgreSQL server is reachable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.domain.questions import QuestionBank
from bot.drills import DrillService
from bot.settings import Settings
from storage import repo
from storage.db import Database
from storage.models import Drill, StreakState
from tests.fakes.workspace import CHANNEL

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def service(postgres_databases) -> Iterator[DrillService]:  # type: ignore[no-untyped-def]
    url = postgres_databases()
    db = Database(url)
    settings = Settings(_env_file=None, drill_channel=CHANNEL, database_url=url)  # type: ignore[call-arg]
    yield DrillService(settings=settings, bank=QuestionBank(questions=()), db=db, slack=None, clock=lambda: NOW)  # type: ignore[arg-type]
    db.dispose()


def _closed_drills(service: DrillService, n: int) -> list[Drill]:
    drills = []
    with service.db.transaction() as session:
        for i in range(n):
            drill = Drill(
                channel=CHANNEL, day=date(2026, 5, 1) + timedelta(days=i), question_id="q", status="closed",
                ts=f"{1700000000 + i}.000100", deadline=NOW - timedelta(days=30 - i), answer_count=0, attempts=1,
            )
            session.add(drill)
            drills.append(drill)
    return drills


def _reply(drill: Drill, user: str) -> dict[str, str]:
    # Before the deadline (Slack redelivered it late); each person's message has its own ts.
    written = drill.deadline - timedelta(minutes=5, seconds=ord(user[-1]))
    return {"type": "message", "channel": CHANNEL, "user": user, "text": "late", "thread_ts": str(drill.ts),
            "ts": f"{written.timestamp():.6f}"}


def test_an_answer_racing_the_fold_is_never_left_out(service: DrillService) -> None:
    (drill,) = _closed_drills(service, 1)
    inserted, release = threading.Event(), threading.Event()
    real_insert = repo.insert_answer

    def slow_insert(session, **kwargs):  # type: ignore[no-untyped-def]
        result = real_insert(session, **kwargs)
        inserted.set()
        assert release.wait(10)  # the answer's transaction stays open while the fold runs
        return result

    repo.insert_answer = slow_insert  # type: ignore[assignment]
    try:
        answering = threading.Thread(target=service.handle_message_event, args=(_reply(drill, "UA"), "UBOT"))
        answering.start()
        assert inserted.wait(10)
        folded: list[int] = []
        folding = threading.Thread(target=lambda: folded.append(service.fold_streaks(CHANNEL)))
        folding.start()
        folding.join(0.5)
        assert folding.is_alive(), "the fold did not wait for the answer's transaction"
        release.set()
        answering.join(10)
        folding.join(10)
    finally:
        repo.insert_answer = real_insert  # type: ignore[assignment]
    assert folded == [1]
    with service.db.transaction() as session:
        assert [(s.user_id, s.total) for s in session.query(StreakState)] == [("UA", 1)]


def test_rebuilds_and_folds_at_once_never_deadlock(service: DrillService) -> None:
    drills = _closed_drills(service, 6)
    assert service.fold_streaks(CHANNEL) == 6
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def answers(user: str) -> None:
        try:
            start.wait(5)
            for drill in drills:
                service.handle_message_event(_reply(drill, user), "UBOT")
        except BaseException as exc:  # noqa: BLE001 - a deadlock error is what this test looks for
            errors.append(exc)

    def folds() -> None:
        try:
            start.wait(5)
            for _ in range(10):
                service.fold_streaks(CHANNEL)
                service.snooze("UC", NOW.date() + timedelta(days=1))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=answers, args=(u,)) for u in ("UA", "UB")]
    threads += [threading.Thread(target=folds), threading.Thread(target=folds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    service.fold_streaks(CHANNEL)
    board = {s.user_id: s.total for s in service.leaderboard(CHANNEL)}
    assert board == {"UA": 6, "UB": 6}


def test_a_snooze_that_changes_folded_history_and_a_fold_never_deadlock(service: DrillService) -> None:
    """Deterministic interleaving: the snooze's transaction is held right after its first write while a fold
    runs. Before the lock order, the snooze deleted `streaks` then updated every drill of the channel, the
    fold updated its drills then deleted `streaks`: each waited for the other, and PostgreSQL aborted one
    with a deadlock. Now the snooze only records that a rebuild is due, and the fold takes drills first."""
    from sqlalchemy import event

    today = NOW.date()
    with service.db.transaction() as session:
        for offset in range(-2, 4):  # three drills up to today, three after it
            session.add(Drill(
                channel=CHANNEL, day=today + timedelta(days=offset), question_id="q", status="closed",
                ts=f"{1700000000 + offset + 10}.000100", deadline=NOW - timedelta(hours=1), answer_count=0,
                attempts=1, streak_applied=offset <= 0,
            ))
        session.add(StreakState(channel=CHANNEL, user_id="UA", current=0, longest=0, total=0))
    paused, release = threading.Event(), threading.Event()
    snoozer: list[threading.Thread] = []

    def hold_after_first_write(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        first_write = statement.startswith(("DELETE FROM streaks", "INSERT INTO streak_rebuilds"))
        if snoozer and threading.current_thread() is snoozer[0] and first_write and not paused.is_set():
            paused.set()
            assert release.wait(10)

    event.listen(service.db.engine, "after_cursor_execute", hold_after_first_write)
    errors: list[BaseException] = []

    def run(step) -> None:  # type: ignore[no-untyped-def]
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - a deadlock is what this test looks for
            errors.append(exc)

    try:
        snoozer.append(threading.Thread(target=run, args=(lambda: service.snooze("UA", today + timedelta(days=3)),)))
        snoozer[0].start()
        assert paused.wait(10), "the snooze never wrote"
        folder = threading.Thread(target=run, args=(lambda: service.fold_streaks(CHANNEL),))
        folder.start()
        folder.join(0.5)
        release.set()
        snoozer[0].join(15)
        folder.join(15)
    finally:
        event.remove(service.db.engine, "after_cursor_execute", hold_after_first_write)
    assert not errors, errors
    service.fold_streaks(CHANNEL)
    with service.db.transaction() as session:
        assert all(d.streak_applied for d in session.query(Drill))
