"""Engine, sessions and schema upgrades.

SQLite is tuned for a server and a CLI sharing one file: WAL (readers never block the writer), a 30 s
busy timeout, and `BEGIN IMMEDIATE` for every transaction so a transaction that reads and then writes
takes the write lock up front instead of failing with `database is locked` halfway. Every command calls
`Database.upgrade()` first, so an empty database (file or PostgreSQL) gets its schema from the Alembic
migrations; concurrent upgrades are serialised (SQLite's write lock, a PostgreSQL advisory lock).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from bot.errors import ConfigError

__all__ = ["Database", "WouldWait"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# `begin(wait=False)` commits never checkpoint the WAL themselves (a checkpoint writes the database file and
# syncs it: tens to hundreds of milliseconds now and then, on the HTTP edge's event loop); every this many
# of them, a background thread runs a passive checkpoint instead.
NOWAIT_CHECKPOINT_EVERY = 500


class WouldWait(Exception):
    """`Database.begin(wait=False)` could not start a transaction without waiting (nothing was done)."""


class Database:
    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError("DATABASE_URL: not a database URL (e.g. sqlite:///drills.db)") from None
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        # As many pooled connections as server threads; a pre-ping only where the server can drop them.
        kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": pool_size}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError, ModuleNotFoundError) as exc:
            hint = " (install drillbot[postgres] for PostgreSQL)" if self.dialect == "postgresql" else ""
            raise ConfigError(f"DATABASE_URL: cannot use {self.dialect!r}: {exc.__class__.__name__}{hint}") from None
        if self.dialect == "sqlite":
            _tune_sqlite(self.engine)
            self.read_engine: Engine = create_engine(parsed, poolclass=NullPool, connect_args=kwargs["connect_args"])
            _tune_sqlite(self.read_engine, immediate=False)
        else:
            self.read_engine = self.engine
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer and every transaction takes the write lock (BEGIN IMMEDIATE): queue this
        # process's threads on a lock, which wakes the next one at once, instead of SQLite's busy handler,
        # which sleeps up to 100 ms between tries. Other processes still wait through the busy timeout.
        self._writer = threading.Lock() if self.dialect == "sqlite" else _NoLock()
        self._local = threading.local()
        self._write_conn: Connection | None = None  # SQLite: `begin()`'s connection, under the writer lock
        self._nowait_conn: Connection | None = None  # SQLite: `begin(wait=False)`'s, likewise
        self._nowait_commits = 0
        self._checkpointing = threading.Event()

    @contextmanager
    def transaction(self, *, snapshot: bool = False) -> Iterator[Session]:
        """One short unit of work: commits on success, rolls back on error.

        `snapshot`: several reads that must agree (a leaderboard reads the stored state, then the drills not
        folded into it): REPEATABLE READ on PostgreSQL; SQLite transactions are serialised already.

        Transactions never nest: a second one opened on the same thread would, on SQLite, wait out the busy
        timeout behind the first (and on PostgreSQL could deadlock against it), so it fails at once.
        """
        if getattr(self._local, "open", False):
            raise RuntimeError("a database transaction is already open on this thread; transactions never nest")
        self._local.open = True
        try:
            with self._writer, self.sessions.begin() as session:
                if snapshot and self.dialect == "postgresql":
                    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                yield session
        finally:
            self._local.open = False

    @contextmanager
    def begin(self, *, wait: bool = True) -> Iterator[Connection]:
        """Like `transaction()`, but a bare Core connection: no ORM session, for the hot paths (an answer is a
        prepared statement or two, see `storage.repo.insert_answer`). Same writer lock, same no-nesting rule.

        `wait=False`: start only if that takes no waiting at all, else raise `WouldWait` at once: on SQLite
        when this process's writer lock is free and no other process holds the database's write lock; never
        on PostgreSQL (every statement is a network round trip). The answer intake uses it to store replies
        on the HTTP edge's event loop, which must never block on a lock."""
        if getattr(self._local, "open", False):
            raise RuntimeError("a database transaction is already open on this thread; transactions never nest")
        if not wait and self.dialect != "sqlite":
            raise WouldWait("PostgreSQL statements are network round trips")
        if not self._writer.acquire(blocking=wait):
            raise WouldWait("another thread of this process is writing")
        self._local.open = True
        try:
            if self.dialect != "sqlite":
                with self.engine.begin() as conn:
                    yield conn
                return
            # One connection for this process's writes, kept open: they take turns on the writer lock
            # anyway, and a pool checkout, a new Connection and the checkin's reset each cost about as
            # much as the statement itself. A connection that broke is dropped and the next one opened.
            # `wait=False` has a connection of its own whose BEGIN IMMEDIATE fails at once when the file is
            # locked (busy timeout 0; the "begin" event then issues nothing more).
            slot = "_write_conn" if wait else "_nowait_conn"
            conn = getattr(self, slot)
            if conn is None or conn.closed or conn.invalidated:
                conn = self.engine.connect()
                if not wait:
                    driver = conn.connection.driver_connection
                    assert driver is not None
                    driver.execute("PRAGMA busy_timeout=0")
                    driver.execute("PRAGMA wal_autocheckpoint=0")
                setattr(self, slot, conn)
            # The transaction is the driver's: BEGIN IMMEDIATE and COMMIT straight on it (SQLAlchemy's own
            # transaction bookkeeping cost as much as the answer's statement). A Core statement run inside
            # autobegins SQLAlchemy's side too (the "begin" event then issues nothing); it commits both.
            driver = _begin_immediate(conn, wait=wait)
            try:
                yield conn
                if conn.in_transaction():
                    conn.commit()
                else:
                    _on_driver(driver.commit, "COMMIT")
                if not wait:
                    self._count_nowait_commit()
            except BaseException:
                if conn.invalidated:
                    conn.close()
                    setattr(self, slot, None)
                else:
                    if conn.in_transaction():
                        conn.rollback()
                    if driver.in_transaction:
                        driver.rollback()
                raise
        finally:
            self._local.open = False
            self._writer.release()

    def _count_nowait_commit(self) -> None:
        """Under the writer lock: every NOWAIT_CHECKPOINT_EVERY commits, a passive checkpoint elsewhere."""
        self._nowait_commits += 1
        if self._nowait_commits % NOWAIT_CHECKPOINT_EVERY == 0 and not self._checkpointing.is_set():
            self._checkpointing.set()
            threading.Thread(target=self._checkpoint, name="sqlite-checkpoint", daemon=True).start()

    def _checkpoint(self) -> None:
        try:
            raw = self.read_engine.raw_connection()  # outside any transaction: a checkpoint cannot run in one
            try:
                driver = raw.driver_connection
                assert driver is not None
                driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                raw.close()
        except Exception as exc:  # the next one will try again; the WAL only grows meanwhile
            log.warning("SQLite WAL checkpoint failed: %s", exc.__class__.__name__)
        finally:
            self._checkpointing.clear()

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work that never takes SQLite's write lock (a metrics scrape, a probe).

        On SQLite it is a deferred transaction on a connection of its own (WAL: readers never wait for the
        writer); on PostgreSQL a plain transaction that is rolled back.
        """
        with self._readers.begin() as session:
            yield session
            session.rollback()

    def ping(self) -> bool:
        # A raw DBAPI round trip: no SQLAlchemy transaction, so on SQLite no BEGIN IMMEDIATE that would wait
        # behind another process's write lock (a health probe must answer at once).
        try:
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
            finally:
                raw.close()
            return True
        except (OperationalError, OSError, self.engine.dialect.loaded_dbapi.Error):
            return False

    def revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except OperationalError as exc:
            raise ConfigError(f"DATABASE_URL: cannot open the database ({_reason(exc)})") from None

    @staticmethod
    def _config() -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        return config

    def head(self) -> str | None:
        return ScriptDirectory.from_config(self._config()).get_current_head()

    def upgrade(self, revision: str = "head", *, bank: Any = None) -> None:
        """Bring the schema to `revision` (the latest by default); a no-op (one query) when it already is.

        `bank` (a QuestionBank) lets a data migration copy questions into drills posted before they kept one.
        """
        config = self._config()
        config.attributes["bank"] = bank
        head = self.head() if revision == "head" else revision
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
                conn.rollback()
                if current == head:
                    return
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
        except OperationalError as exc:
            raise ConfigError(f"DATABASE_URL: cannot open the database ({_reason(exc)})") from None

    def dispose(self) -> None:
        with self._writer:
            for conn in (self._write_conn, self._nowait_conn):
                if conn is not None:
                    conn.close()
            self._write_conn = self._nowait_conn = None
        self.engine.dispose()
        self.read_engine.dispose()


def _reason(exc: OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__


def _tune_sqlite(engine: Engine, *, immediate: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Switching a new file to WAL needs a moment of exclusive access; two processes starting together
        # on an empty file can collide here, and SQLite may report that at once rather than wait.
        for attempt in range(50):
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: through SQLAlchemy's execute, BEGIN cost as much as the answer's INSERT.
        # Already in a transaction: `begin(wait=False)` has just begun it (`_begin_now`).
        driver = conn.connection.driver_connection
        if not driver.in_transaction:
            driver.execute(begin)


def _begin_immediate(conn: Connection, *, wait: bool) -> Any:
    """BEGIN IMMEDIATE on the connection's driver; returns the driver connection. Without `wait` (the
    connection's busy timeout is 0), `WouldWait` at once if another connection holds the write lock."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if not wait and getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            raise WouldWait("another process is writing to the SQLite file") from None
        raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
    return driver


def _on_driver(call: Callable[[], Any], statement: str) -> Any:
    """A call on the driver, its errors raised as SQLAlchemy's (as if through `Connection.execute`), so
    callers tell a database failure from a bug the same way whichever way a statement ran."""
    try:
        return call()
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


class _NoLock:
    """PostgreSQL needs no writer lock: the same interface as a threading.Lock, always free."""

    def acquire(self, blocking: bool = True) -> bool:
        return True

    def release(self) -> None:
        return None

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        return None
