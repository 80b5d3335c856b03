"""The answer rule in SQL agrees with the one in the domain (SQLite and PostgreSQL), and the edge's rule
for messages it acknowledges itself agrees with the answer path.

`bot.domain.lifecycle.accepts_answer` is the rule; the answer path's statement
(`storage.repo.insert_answer`, an `INSERT ... SELECT` with `repo.accepts_answer_sql` in its WHERE) is the
same rule written in SQL so that an answer is one statement. Property test: for every state, deadlines
anywhere, and the time written just before, at or after the deadline (to the microsecond, in any UTC
offset), the statement stores the answer exactly when the domain rule accepts it; the one-statement form
leaves drills already folded into the streaks to the caller's second path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from sqlalchemy import func, insert, select

from bot.domain.answers import concerns_answers
from bot.domain.lifecycle import DrillState, accepts_answer
from bot.domain.questions import QuestionBank
from bot.drills import DrillService
from bot.settings import Settings
from storage import repo
from storage.db import Database
from storage.models import Answer, Drill

CHANNEL = "CRULE0001"
THREAD = "1700000000.000100"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database on each backend (a SQLite file, a PostgreSQL copy of the template)."""
    database = Database(database_url)
    yield database
    database.dispose()


deadlines = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC))
# Mostly within a second of the deadline (the edge that matters), sometimes days away.
offsets = st.one_of(
    st.integers(-1_000_000, 1_000_000).map(lambda us: timedelta(microseconds=us)),
    st.sampled_from([timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=1)]),
    st.integers(-10 * 86_400, 10 * 86_400).map(lambda s: timedelta(seconds=s)),
)
zones = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    state=st.sampled_from(list(DrillState)),
    deadline=deadlines,
    offset=offsets,
    zone=zones,
    folded=st.booleans(),
    second_path=st.booleans(),
)
def test_the_statement_accepts_exactly_what_the_domain_rule_accepts(
    db: Database, state: DrillState, deadline: datetime, offset: timedelta, zone: timezone, folded: bool,
    second_path: bool,
) -> None:
    written = (deadline + offset).astimezone(zone)
    expected = accepts_answer(state, deadline, written) and (second_path or not folded)
    with db.engine.connect() as conn, conn.begin() as transaction:
        conn.execute(
            insert(Drill).values(
                channel=CHANNEL, day=deadline.date(), question_id="q", status=state, ts=THREAD, deadline=deadline,
                answer_count=0, attempts=1, streak_applied=folded,
            )
        )
        reply = repo.ThreadReply(CHANNEL, THREAD, "1700000001.000200", "UALICE", "an answer", written, written)
        stored = repo.insert_answer(conn, reply=reply, folded=second_path)
        rows = conn.scalar(select(func.count()).select_from(Answer))
        transaction.rollback()
    assert stored is expected, (state, deadline, written, folded, second_path)
    assert rows == (1 if expected else 0)


def test_a_redelivered_reply_is_stored_once(db: Database) -> None:
    deadline = datetime(2030, 1, 1, 12, tzinfo=UTC)
    reply = repo.ThreadReply(CHANNEL, THREAD, "1700000001.000200", "UALICE", "x", deadline - timedelta(hours=1),
                             deadline - timedelta(hours=1))
    with db.engine.connect() as conn, conn.begin() as transaction:
        conn.execute(
            insert(Drill).values(channel=CHANNEL, day=deadline.date(), question_id="q", status=DrillState.OPEN,
                                 ts=THREAD, deadline=deadline, answer_count=0, attempts=1)
        )
        assert repo.insert_answer(conn, reply=reply) is True
        assert repo.insert_answer(conn, reply=reply) is False
        assert repo.insert_answer(conn, reply=reply, folded=True) is False
        assert conn.scalar(select(func.count()).select_from(Answer)) == 1
        transaction.rollback()


def test_no_drill_and_another_channel_store_nothing(db: Database) -> None:
    deadline = datetime(2030, 1, 1, 12, tzinfo=UTC)
    written = deadline - timedelta(hours=1)
    with db.engine.connect() as conn, conn.begin() as transaction:
        conn.execute(
            insert(Drill).values(channel=CHANNEL, day=deadline.date(), question_id="q", status=DrillState.OPEN,
                                 ts=THREAD, deadline=deadline, answer_count=0, attempts=1)
        )
        other_thread = repo.ThreadReply(CHANNEL, "1600000000.000100", "1.2", "UALICE", "x", written, written)
        other_channel = repo.ThreadReply("COTHER", THREAD, "1.3", "UALICE", "x", written, written)
        assert repo.insert_answer(conn, reply=other_thread, folded=True) is False
        assert repo.insert_answer(conn, reply=other_channel, folded=True) is False
        assert repo.answer_target(conn, CHANNEL, THREAD) is not None
        assert repo.answer_target(conn, "COTHER", THREAD) is None
        transaction.rollback()


# -- what the HTTP edge acknowledges itself ---------------------------------------------------------------

BOT_USER = "UBOTSELF1"
REPLY = {"type": "message", "channel": CHANNEL, "user": "UALICE", "ts": "1700000001.000200",
         "thread_ts": "1700000000.000100", "text": "an answer", "event_ts": "1700000001.000200"}
EDIT = {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": "1700000002.000300",
        "event_ts": "1700000002.000300", "message": {k: v for k, v in REPLY.items() if k != "channel"}}
DELETE = {"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "ts": "1700000002.000300",
          "event_ts": "1700000002.000300", "deleted_ts": "1700000001.000200"}
DROP = object()
values = st.one_of(
    st.just(DROP),
    st.sampled_from(["UALICE", BOT_USER, "", "B0123", CHANNEL, "COTHER", "1700000000.000100", "1700000001.000200",
                     "thread_broadcast", "file_share", "bot_message", "channel_join", "message_changed",
                     "message_deleted", "message_replied", "me_message"]),
    st.none(),
    st.integers(),
)
keys = st.sampled_from(["channel", "user", "bot_id", "subtype", "ts", "thread_ts", "text", "event_ts", "deleted_ts",
                        "message", "message.user", "message.bot_id", "message.subtype", "message.ts",
                        "message.thread_ts"])


def _mutated(base: dict[str, object], changes: list[tuple[str, object]]) -> dict[str, object]:
    """A person's reply, an edit of one or a delete, with a few fields dropped or changed: every kind of message
    a channel sees is a few changes away from one that matters."""
    event = {**base, "message": dict(base["message"])} if isinstance(base.get("message"), dict) else dict(base)
    for key, value in changes:
        target: dict[str, object] = event
        if key.startswith("message."):
            if not isinstance(event.get("message"), dict):
                continue
            target, key = event["message"], key.removeprefix("message.")  # type: ignore[assignment]
        if value is DROP:
            target.pop(key, None)
        else:
            target[key] = value
    return event


message_events = st.builds(
    _mutated, st.sampled_from([REPLY, EDIT, DELETE]), st.lists(st.tuples(keys, values), max_size=3)
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=message_events)
def test_every_message_the_edge_acknowledges_is_one_the_answer_path_ignores_without_the_database(
    rule_service: tuple[DrillService, list[str]], event: dict[str, object]
) -> None:
    """The edge acknowledges, without dispatching, every `message` event `concerns_answers` says False to; the
    answer path must have ignored each of them before touching the database."""
    service, statements = rule_service
    if concerns_answers(event):
        return
    statements.clear()
    outcome = service.handle_message_event(event, BOT_USER)
    assert outcome.startswith("ignored"), (event, outcome)
    assert statements == [], (event, statements)


def test_edits_deletes_and_replies_concern_answers() -> None:
    reply = {"type": "message", "channel": CHANNEL, "user": "UALICE", "ts": "2.0", "thread_ts": "1.0", "text": "x"}
    assert concerns_answers(reply)
    assert concerns_answers({**reply, "subtype": "thread_broadcast"})
    assert concerns_answers({"type": "message", "subtype": "message_changed", "channel": CHANNEL})
    assert concerns_answers({"type": "message", "subtype": "message_deleted", "channel": CHANNEL})
    top_level = {k: v for k, v in reply.items() if k != "thread_ts"}
    assert not concerns_answers(top_level)
    assert not concerns_answers({**reply, "bot_id": "B1"})
    assert not concerns_answers({**reply, "subtype": "bot_message"})
    assert not concerns_answers({**reply, "subtype": "channel_join"})
    assert not concerns_answers({**reply, "thread_ts": "2.0"})  # the thread's parent itself


@pytest.fixture(scope="module")
def rule_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DrillService, list[str]]]:
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('edge') / 'edge.db'}")
    database.upgrade()
    statements: list[str] = []
    sa_event.listen(database.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    settings_ = Settings(_env_file=None, drill_channel=CHANNEL, database_url=str(database.url))  # type: ignore[call-arg]
    service = DrillService(settings=settings_, bank=QuestionBank(questions=()), db=database, slack=None)  # type: ignore[arg-type]
    yield service, statements
    database.dispose()
