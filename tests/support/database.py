"""Test databases: the migrated schema is built once per session and copied for each test.

SQLite: the migrated file is copied. PostgreSQL: `CREATE DATABASE ... TEMPLATE` a migrated database, and
`DROP ... WITH (FORCE)` afterwards. `database_url` runs a test on both backends (the `postgresql` case
carries the `postgres` marker, and is skipped, saying why, without a server); `sqlite_url` is a migrated
SQLite file only; `empty_database_url` has no schema at all, for tests of the migrations and of
processes that start on an empty database. `db` reads what a test's database holds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from bot.domain.claims import LEASE
from storage.db import Database
from storage.models import Drill
from tests.support.waiting import eventually

__all__ = ["postgres_admin_url"]

POSTGRES_CANDIDATES = (
    "postgresql://root@127.0.0.1:5432/test",
    "postgresql://postgres@127.0.0.1:5432/test",
)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SQLITE_FILE = "drills.db"


@functools.cache
def postgres_admin_url() -> tuple[str | None, str]:
    """A PostgreSQL server the tests may create scratch databases on, or why there is none."""
    explicit = os.environ.get("DRILLBOT_TEST_POSTGRES_URL")
    candidates = [explicit.replace("+psycopg", "")] if explicit else list(POSTGRES_CANDIDATES)
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[dev]')"
    reasons = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3, autocommit=True):
                return url, ""
        except psycopg.Error as exc:
            reasons.append(f"{url}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__}")
    return None, "PostgreSQL is not reachable (" + "; ".join(reasons) + "); set DRILLBOT_TEST_POSTGRES_URL to use another"


def _admin() -> str:
    admin, reason = postgres_admin_url()
    if admin is None:
        pytest.skip(reason)
    return admin


def _pg_url(admin: str, name: str) -> str:
    return f"{admin.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def _pg_execute(admin: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def _scratch_postgres() -> Iterator[str]:
    """An empty database for one test."""
    admin = _admin()
    name = f"drillbot_test_{uuid.uuid4().hex[:12]}"
    _pg_execute(admin, f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(admin, name)
    finally:
        _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _PostgresCopies:
    """Copies of the migrated template, made ahead of time on a thread of their own.

    CREATE DATABASE and DROP DATABASE take a few hundred milliseconds each (mostly waiting for the disk):
    the next test's copy is made, and the last test's dropped, while a test runs.
    """

    AHEAD = 2

    def __init__(self, admin: str, template: str) -> None:
        self.admin, self.template = admin, template
        self.ready: queue.Queue[str | BaseException] = queue.Queue()
        self.work: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="postgres-copies", daemon=True)
        self.thread.start()
        for _ in range(self.AHEAD):
            self._order()

    def _order(self) -> None:
        self.work.put(("create", f"drillbot_test_{uuid.uuid4().hex[:12]}"))

    def _run(self) -> None:
        while (job := self.work.get()) is not None:
            action, name = job
            try:
                if action == "create":
                    _pg_execute(self.admin, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                    self.ready.put(name)
                else:
                    _pg_execute(self.admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except BaseException as exc:  # handed to the test that waits for a copy
                if action == "create":
                    self.ready.put(exc)

    def take(self) -> str:
        """A fresh copy's URL; its drop is scheduled by `give_back`."""
        self._order()
        got = self.ready.get(timeout=60)
        if isinstance(got, BaseException):
            raise got
        return got

    def give_back(self, name: str) -> None:
        self.work.put(("drop", name))

    def close(self) -> None:
        """Drop what is left (copies made ahead and not used) and stop the thread."""
        self.work.put(None)
        self.thread.join(timeout=60)
        while not self.ready.empty():
            got = self.ready.get()
            if isinstance(got, str):
                _pg_execute(self.admin, f'DROP DATABASE IF EXISTS "{got}" WITH (FORCE)')


def _migrate(url: str) -> None:
    db = Database(url)
    try:
        db.upgrade()
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / SQLITE_FILE
    _migrate(f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as conn:  # fold the WAL into the file: copy one file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def _postgres_copies() -> Iterator[_PostgresCopies]:
    """A migrated PostgreSQL database that every test's database is a copy of (CREATE DATABASE ... TEMPLATE)."""
    admin = _admin()
    template = f"drillbot_template_{uuid.uuid4().hex[:12]}"
    _pg_execute(admin, f'CREATE DATABASE "{template}"')
    copies = None
    try:
        _migrate(_pg_url(admin, template))
        copies = _PostgresCopies(admin, template)
        yield copies
    finally:
        if copies is not None:
            copies.close()
        _pg_execute(admin, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


def _migrated_sqlite(template: Path, path: Path) -> str:
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for one test, on each backend: a SQLite file, a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield _migrated_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path / SQLITE_FILE)
    else:
        copies: _PostgresCopies = request.getfixturevalue("_postgres_copies")
        name = copies.take()
        try:
            yield _pg_url(copies.admin, name)
        finally:
            copies.give_back(name)


@pytest.fixture
def postgres_databases(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """`postgres_databases()`: a fresh migrated PostgreSQL database each call (skipped, saying why, without a
    server), all dropped after the test. For tests that need only PostgreSQL, or many databases."""
    copies: _PostgresCopies = request.getfixturevalue("_postgres_copies")
    taken: list[str] = []

    def make() -> str:
        taken.append(copies.take())
        return _pg_url(copies.admin, taken[-1])

    yield make
    for name in taken:
        copies.give_back(name)


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file for one test (for tests whose subject does not depend on the backend), apart
    from `database_url`'s."""
    return _migrated_sqlite(_sqlite_template, tmp_path / "single.db")


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without any schema (no file yet, on SQLite), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with _scratch_postgres() as url:
            yield url


class DatabaseReader:
    """What a test's database holds. `source` is a database URL (read through an engine of its own, as
    another process would) or anything holding the bot's Database: a Bot, a Runtime, a DrillService."""

    @contextlib.contextmanager
    def session(self, source: Any) -> Iterator[Session]:
        if isinstance(source, str):
            database = Database(source)
            try:
                with database.transaction() as session:
                    yield session
            finally:
                database.dispose()
            return
        runtime = getattr(source, "runtime", source)
        with runtime.db.transaction() as session:
            yield session

    def query(self, source: Any, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        if isinstance(source, str):  # a plain read: no write lock taken on SQLite (other processes write)
            engine = create_engine(source)
            try:
                with engine.connect() as conn:
                    return [tuple(row) for row in conn.execute(text(sql), params)]
            finally:
                engine.dispose()
        with self.session(source) as session:
            return [tuple(row) for row in session.execute(text(sql), params)]

    def lease_runs_out(self, source: Any) -> None:
        """Time passes for every claimed step: its lease started more than a lease ago (claims trust only
        their lease, so this is what lets a restart take over a dead process's step without waiting)."""
        with self.session(source) as session:
            for drill in session.scalars(select(Drill).where(Drill.claimed_by.is_not(None))):
                drill.claimed_at = drill.claimed_at - LEASE - timedelta(seconds=1)

    def drills(self, source: Any, channel: str | None = None) -> list[Drill]:
        """Every drill (of one channel), oldest first, detached from the session."""
        with self.session(source) as session:
            query = select(Drill).order_by(Drill.id)
            if channel is not None:
                query = query.where(Drill.channel == channel)
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def one_drill(self, source: Any) -> Drill:
        rows = self.drills(source)
        assert len(rows) == 1, rows
        return rows[0]

    def drill(self, source: Any, drill_id: int) -> Drill:
        return next(d for d in self.drills(source) if d.id == drill_id)

    def wait_recorded(self, source: Any, channel: str, ts: str) -> Drill:
        """The drill whose message is `ts`, once the bot has recorded it (replies before that are no answers)."""
        return eventually(  # type: ignore[no-any-return]
            lambda: next((d for d in self.drills(source, channel) if d.ts == ts), None),
            what=f"drill {ts} recorded in {channel}",
        )

    def wait_closed(self, source: Any, drill_id: int) -> Drill:
        return eventually(  # type: ignore[no-any-return]
            lambda: next((d for d in self.drills(source) if d.id == drill_id and d.status == "closed"), None),
            what=f"drill {drill_id} revealed and closed",
        )

    def wait_folded(self, source: Any, channel: str) -> None:
        """Every drill of the channel is closed and folded into the stored streaks.

        The reveal is visible in Slack a moment before the bot records the close and folds the streaks;
        tests that read streaks right after a reveal wait for this.
        """

        def folded() -> bool:
            rows = self.drills(source, channel)
            return bool(rows) and all(d.status == "closed" and d.streak_applied for d in rows)

        eventually(folded, what=f"every drill in {channel} closed and folded")


@pytest.fixture
def db() -> DatabaseReader:
    """`db.query(source, sql)`, `db.drills(source)`, `db.one_drill(source)`, `db.wait_folded(source, channel)`..."""
    return DatabaseReader()
