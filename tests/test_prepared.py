"""`storage.prepared.Prepared` runs a statement on the driver exactly as `Connection.execute` would (SQLite and
PostgreSQL): the same rows, with the same types, the same values stored, and driver errors raised as
SQLAlchemy's (the listener tells a database failure, answered 500, from a bug the same way)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import DBAPIError

from bot.domain.lifecycle import DrillState
from storage import repo
from storage.db import Database
from storage.models import Answer, Drill

CHANNEL = "CPREP0001"
DEADLINE = datetime(2030, 1, 1, 12, tzinfo=UTC)
OPEN_THREAD = f"17000000{list(DrillState).index(DrillState.OPEN):02d}.000100"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _drills(conn: Connection) -> None:
    """A drill per state, each its own thread; one still being posted has no ts yet."""
    for n, state in enumerate(DrillState):
        conn.execute(insert(Drill).values(
            channel=CHANNEL, day=(DEADLINE - timedelta(days=n)).date(), question_id="q", status=state,
            ts=None if state is DrillState.POSTING else f"17000000{n:02d}.000100", deadline=DEADLINE,
            answer_count=0, attempts=1, streak_applied=state is DrillState.CLOSED, created_at=DEADLINE - timedelta(days=n, hours=1),
        ))


def test_a_lookup_returns_what_connection_execute_returns_types_included(db: Database) -> None:
    with db.engine.connect() as conn, conn.begin() as transaction:
        _drills(conn)
        for n in range(len(DrillState) + 1):
            for cutoff in (DEADLINE - timedelta(days=30), DEADLINE + timedelta(days=1)):
                params = {"channel": CHANNEL, "ts": f"17000000{n:02d}.000100", "cutoff": cutoff}
                through_sqlalchemy = [tuple(row) for row in conn.execute(repo._LOOKUP.statement, params)]
                prepared = repo._LOOKUP.rows(conn, params)
                assert prepared == through_sqlalchemy, params
                for row in prepared:
                    assert isinstance(row[2], DrillState)  # the Enum column's result processing
                    assert row[3].tzinfo is not None  # the UTC DateTime's
        assert any(repo._LOOKUP.rows(conn, {"channel": CHANNEL, "ts": "1700000001.000100", "cutoff": DEADLINE}))
        transaction.rollback()


def test_an_answer_stored_by_the_prepared_insert_equals_one_stored_through_sqlalchemy(db: Database) -> None:
    written = DEADLINE - timedelta(hours=1, microseconds=7)
    params = repo.ThreadReply(CHANNEL, OPEN_THREAD, "1700000002.000200", "UALICE", "an answer", written,
                              written + timedelta(seconds=1))._asdict()
    # The drill by its thread (ids differ between runs on PostgreSQL: sequences are not rolled back).
    columns = [Drill.ts, *(c for c in Answer.__table__.c if c.name not in ("id", "drill_id"))]
    stored = []
    for run in ("prepared", "execute"):
        with db.engine.connect() as conn, conn.begin() as transaction:
            _drills(conn)
            statement = repo._ANSWER_INSERTS[(db.dialect, False)]
            if run == "prepared":
                returned = statement.rows(conn, params)
            else:
                returned = [tuple(row) for row in conn.execute(statement.statement, params)]
            assert len(returned) == 1
            stored.append(conn.execute(select(*columns).join_from(Answer, Drill, Answer.drill_id == Drill.id)).one())
            transaction.rollback()
    assert stored[0] == stored[1]
    assert stored[0].created_at == written + timedelta(seconds=1)  # aware UTC in, the same instant back


def test_a_driver_error_is_raised_as_sqlalchemys(db: Database) -> None:
    written = DEADLINE - timedelta(hours=1)
    params = repo.ThreadReply(CHANNEL, OPEN_THREAD, "1700000002.000200", "UALICE", None,  # type: ignore[arg-type]
                              written, written)._asdict()
    with db.engine.connect() as conn, conn.begin() as transaction:
        _drills(conn)
        with pytest.raises(DBAPIError) as raised:
            repo._ANSWER_INSERTS[(db.dialect, False)].rows(conn, params)  # answers.text is NOT NULL
        assert "text" in str(raised.value).lower()
        transaction.rollback()
