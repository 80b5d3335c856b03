"""Schema migrations: an old database holding data is upgraded in place and loses nothing.

These run every migration from an empty database (`empty_database_url`); every other test starts from a
copy of a schema migrated once per session.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from bot.domain.questions import QuestionBank
from bot.domain.streaks import DrillRef, compute_streaks, rank
from bot.drills import DrillService
from bot.settings import Settings
from bot.slack_api import SlackGateway, make_client
from storage.db import Database
from tests.fakes.workspace import CHANNEL

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ANSWERS = {1: ["UA", "UB"], 2: ["UA"], 3: ["UA", "UC"], 4: ["UB"]}  # drill 4 is still open


def _fill_revision_0001(db: Database) -> None:
    """Data written the way the 0001 schema stores it (raw SQL: today's models have more columns)."""
    with db.engine.begin() as conn:
        for drill_id, users in ANSWERS.items():
            is_open = drill_id == 4
            deadline = NOW + timedelta(hours=2) if is_open else NOW - timedelta(days=10 - drill_id)
            conn.execute(
                text(
                    "INSERT INTO drills (id, channel, day, question_id, status, ts, deadline, answer_count, attempts)"
                    " VALUES (:id, :channel, :day, :q, :status, :ts, :deadline, :count, 1)"
                ),
                {
                    "id": drill_id,
                    "channel": CHANNEL,
                    "day": date(2026, 5, 1) + timedelta(days=drill_id),
                    "q": f"question-{drill_id}",
                    "status": "open" if is_open else "closed",
                    "ts": f"17000000{drill_id}.000100",
                    "deadline": deadline.replace(tzinfo=None) if db.dialect == "sqlite" else deadline,
                    "count": len(users),
                },
            )
            for user in users:
                conn.execute(
                    text(
                        "INSERT INTO answers (drill_id, channel, message_ts, user_id, text, deleted, created_at, updated_at)"
                        " VALUES (:d, :c, :ts, :u, :t, :deleted, :now, :now)"
                    ),
                    {"d": drill_id, "c": CHANNEL, "ts": f"{drill_id}.{user}", "u": user, "t": f"answer by {user}",
                     "deleted": False, "now": NOW.replace(tzinfo=None) if db.dialect == "sqlite" else NOW},
                )


def test_upgrade_from_first_migration_keeps_every_row_and_streak(empty_database_url):
    database_url = empty_database_url
    db = Database(database_url)
    try:
        db.upgrade("0001")
        assert db.revision() == "0001"
        _fill_revision_0001(db)

        db.upgrade()
        assert db.revision() == db.head()

        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM drills")).scalar() == 4
            assert conn.execute(text("SELECT count(*) FROM answers")).scalar() == 6
            texts = {row[0] for row in conn.execute(text("SELECT text FROM answers"))}
            assert "answer by UC" in texts

        settings = Settings(_env_file=None, drill_channel=CHANNEL, database_url=database_url)  # type: ignore[call-arg]
        slack = SlackGateway(make_client(token=None, base_url="http://127.0.0.1:9/api/"))
        service = DrillService(settings=settings, bank=QuestionBank(questions=()), db=db, slack=slack, clock=lambda: NOW)
        answered: dict[str, set[int]] = {}
        for drill_id, users in ANSWERS.items():
            for user in users:
                answered.setdefault(user, set()).add(drill_id)
        expected = rank(compute_streaks([DrillRef(i, i == 4) for i in ANSWERS], answered).values())
        assert service.leaderboard() == expected
        # The new state table fills in on the next fold and gives the same answer.
        assert service.fold_streaks(CHANNEL) == 3
        assert service.leaderboard() == expected
        service.close()
    finally:
        db.dispose()


def test_upgrade_is_idempotent_and_commands_work_on_an_empty_database(empty_database_url):
    db = Database(empty_database_url)
    try:
        assert db.revision() is None
        db.upgrade()
        db.upgrade()
        assert db.revision() == db.head()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        db.dispose()


def test_a_fresh_upgrade_is_one_transaction_holding_the_lock_throughout(tmp_path: Path) -> None:
    """Regression: Alembic committed after every step, releasing the migration lock between steps, so a
    second replica could apply a later step and the first re-ran it ("table ... already exists")."""
    from sqlalchemy import event

    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    commits: list[str] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append("commit"))
    try:
        db.upgrade()
        assert db.revision() == db.head()
    finally:
        db.dispose()
    assert commits == ["commit"]


def test_a_status_drillbot_does_not_know_stops_the_upgrade_with_one_line_naming_it(empty_database_url):
    from bot.errors import ConfigError

    db = Database(empty_database_url)
    try:
        db.upgrade("0005")
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO drills (channel, day, question_id, status, deadline, answer_count, attempts)"
                " VALUES ('C1', '2026-01-01', 'q', 'paused', '2026-01-01 10:00:00', 0, 1)"
            ))
        try:
            db.upgrade()
        except ConfigError as exc:
            message = str(exc)
        else:
            raise AssertionError("the upgrade went through")
        assert "drills.status" in message and "paused" in message and "\n" not in message
        assert db.revision() == "0005"  # nothing changed
    finally:
        db.dispose()


def test_the_models_and_the_migrations_agree(empty_database_url):
    """Alembic's autogenerate comparison of a freshly migrated database with storage.models finds nothing
    (tables, columns, types, nullability, server defaults, indexes, unique constraints), and the CHECKs of
    the enum columns (which Alembic does not compare) hold exactly the domain enums' values."""
    import re

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    from bot.domain.answers import AnswerSource
    from bot.domain.lifecycle import DrillState
    from storage.models import Base

    db = Database(empty_database_url)
    try:
        db.upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(context, Base.metadata) == []
            checks = {
                (table, check["name"]): set(re.findall(r"'([^']*)'", check["sqltext"]))
                for table in ("drills", "answers")
                for check in inspect(conn).get_check_constraints(table)
            }
        assert checks == {
            ("drills", "ck_drills_status"): {state.value for state in DrillState},
            ("answers", "ck_answers_source"): {source.value for source in AnswerSource},
        }
    finally:
        db.dispose()
