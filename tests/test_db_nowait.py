"""`Database.begin(wait=False)`: the answer intake's way to write on the HTTP edge's event loop. It starts a
transaction only when that takes no waiting, and its commits never run a WAL checkpoint (a background
thread does)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from storage import db as db_module
from storage.db import Database, WouldWait


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    """SQLite only: the writer lock, the busy timeout and the WAL are SQLite's."""
    database = Database(sqlite_url)
    yield database
    database.dispose()


def _count(db: Database) -> int:
    with db.read() as session:
        return int(session.execute(text("SELECT count(*) FROM streak_rebuilds")).scalar_one())


def _write(conn: Any, n: int) -> None:
    conn.execute(text("INSERT INTO streak_rebuilds (channel, requested_at) VALUES (:c, CURRENT_TIMESTAMP)"),
                 {"c": f"CNOWAIT{n:02d}"})


def test_it_commits_when_nobody_else_writes(db: Database) -> None:
    if db.postgres:
        # PostgreSQL: a statement is a network round trip, never on the loop
        with pytest.raises(WouldWait), db.begin(wait=False):
            pass
        return
    with db.begin(wait=False) as conn:
        _write(conn, 1)
    assert _count(db) == 1


def test_another_process_writing_means_would_wait_at_once_and_nothing_done(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        with pytest.raises(WouldWait), db.begin(wait=False) as conn:
            _write(conn, 1)
        assert time.monotonic() - started < 1  # not the 30 s busy timeout
    finally:
        other.execute("ROLLBACK")
        other.close()
    with db.begin(wait=False) as conn:  # free again: the same connection works
        _write(conn, 2)
    assert _count(db) == 1
    db.dispose()


def test_another_thread_writing_means_would_wait(sqlite_db: Database) -> None:
    db = sqlite_db
    inside, leave = threading.Event(), threading.Event()

    def writer() -> None:
        with db.begin():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(WouldWait), db.begin(wait=False):
            pass
    finally:
        leave.set()
        thread.join(10)


def test_an_error_inside_rolls_back_and_the_next_one_works(sqlite_db: Database) -> None:
    db = sqlite_db
    with pytest.raises(ZeroDivisionError), db.begin(wait=False) as conn:
        _write(conn, 1)
        1 / 0  # noqa: B018
    with db.begin(wait=False) as conn:
        _write(conn, 2)
    assert _count(db) == 1


def test_its_commits_leave_checkpoints_to_a_background_thread(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch, eventually: Callable[..., Any]
) -> None:
    db = sqlite_db
    monkeypatch.setattr(db_module, "NOWAIT_CHECKPOINT_EVERY", 3)
    checkpoints: list[str] = []
    real = Database._checkpoint

    def watched(self: Database) -> None:
        checkpoints.append(threading.current_thread().name)
        real(self)

    monkeypatch.setattr(Database, "_checkpoint", watched)
    for n in range(2):
        with db.begin(wait=False) as conn:
            _write(conn, n)
    with db.begin(wait=False) as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0  # never on the committing thread
        _write(conn, 2)
    eventually(lambda: checkpoints == ["sqlite-checkpoint"], what="one checkpoint after three commits")
    assert _count(db) == 3
