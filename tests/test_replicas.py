"""Several `drillbot run` processes on one database: every step happens once, whoever does it.

Each test starts REAL processes (`python -m bot run --http`) against one fake Slack and one database,
on both backends (a SQLite file and a scratch PostgreSQL database). SQLite is the single-host path, but
two processes on one host (replicas, or the server and the CLI) share its file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.events import reply_event
from tests.fakes.slack import FakeSlack
from tests.fakes.workspace import CHANNEL

EVERY_MINUTE = "* * * * *"
MIGRATION_LOCK_KEY = 7_412_903_118  # storage/migrations/env.py

Env = dict[str, str]
pytestmark = pytest.mark.subprocess


# -- a fake Slack whose first auth.test calls wait for each other ------------------------------------


class GatedSlack(FakeSlack):
    """FakeSlack that holds the first `parties` auth.test calls until all have arrived.

    `drillbot run` checks its token (auth.test) right before it starts the server and the scheduler, so
    releasing both replicas together makes their first scheduler ticks coincide within milliseconds.
    Later auth.test calls (Bolt's own) pass at once.
    """

    def __init__(self, parties: int = 2) -> None:
        super().__init__()
        self.parties = parties
        self.arrived = 0
        self.gate = threading.Condition()

    def _handle(self, request: Any) -> None:
        if request.path.split("?")[0] == "/api/auth.test":
            with self.gate:
                self.arrived += 1
                self.gate.notify_all()
                self.gate.wait_for(lambda: self.arrived >= self.parties, timeout=30)
        super()._handle(request)


@pytest.fixture
def slack() -> Iterator[GatedSlack]:
    fake = GatedSlack()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def replica_env(slack: GatedSlack, bot_env: Callable[..., Env]) -> Callable[..., Env]:
    """`replica_env(database_url, **overrides)`: the replicas' environment, against the gated fake Slack."""

    def factory(database_url: str, **overrides: Any) -> Env:
        values = {"drill_answer_window": "1h", **overrides}
        return bot_env(slack_api_url=slack.url, database_url=database_url, **values)

    return factory


@pytest.fixture
def replicas(launch_run: Callable[..., Any]) -> Callable[..., list[Any]]:
    """`replicas(env, count=2)`: `drillbot run --http` processes started back to back (stopped at the end)."""
    started: list[Any] = []

    def launch(env: Env, count: int = 2) -> list[Any]:
        group = [launch_run(env=env, name=f"replica{len(started) + i + 1}") for i in range(count)]
        started.extend(group)
        return group

    return launch


def healthy(group: list[Any]) -> None:
    """Every replica answers /healthz 200 with the database up and the scheduler running."""
    for replica in group:
        health = replica.wait_healthy()
        assert health["database"] == "ok", (replica.name, health)
        assert health["scheduler"] == "running", (replica.name, health)


def stop_cleanly(group: list[Any]) -> None:
    """SIGTERM every replica; each exits 0 and its output shows no error and no token."""
    for replica in group:
        replica.terminate()
    for replica in group:
        logs = replica.stop_cleanly(signalled=True)
        assert "error" not in logs.lower(), f"{replica.name}:\n{logs}"


def settle(group: list[Any]) -> None:
    """Every replica's scheduler has run each job twice more: time for a duplicate to show."""
    for replica in group:
        replica.wait_ticks()


def alive(group: list[Any]) -> Callable[[], None]:
    def check() -> None:
        for replica in group:
            replica.alive()

    return check


def pg_connect(database_url: str) -> Any:
    import psycopg

    return psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://", 1))


def pg_waiting(conn: Any, condition: str) -> int:
    """How many sessions wait for a lock matching `condition` in this database."""
    sql = f"SELECT COUNT(*) FROM pg_locks WHERE {condition} AND NOT granted AND database = "
    sql += "(SELECT oid FROM pg_database WHERE datname = current_database())"
    return int(conn.execute(sql).fetchone()[0])


def run_together(*jobs: Callable[[], Any]) -> list[Any]:
    """Runs the jobs in threads released at the same instant; returns their results in order."""
    start = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def worker(i: int, job: Callable[[], Any]) -> None:
        try:
            start.wait(timeout=10)
            results[i] = job()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results


# -- 1. one drill a day, whoever's scheduler finds it due ---------------------------------------------


def test_two_schedulers_due_at_the_same_moment_post_one_drill(
    replicas, replica_env, slack, database_url, run_cli, db, eventually
):
    env = replica_env(database_url, drill_schedule=EVERY_MINUTE, drill_answer_window="1d")
    # Slack answers slowly, so a replica that comes second keeps meeting the drill while it is being posted.
    slack.delays["chat.postMessage"] = 0.5
    if database_url.startswith("sqlite"):
        group = replicas(env)
        healthy(group)
    else:
        # Both replicas read "no drill today" and then block on their INSERT until the test lets go: the
        # true race, decided by the unique constraint alone.
        upgraded = run_cli("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        with pg_connect(database_url) as holder:
            holder.execute("LOCK TABLE drills IN SHARE ROW EXCLUSIVE MODE")  # reads pass, writes wait
            group = replicas(env)
            healthy(group)
            eventually(
                lambda: pg_waiting(holder, "relation = 'drills'::regclass") >= 2,
                30,
                what="both replicas blocked inserting today's drill",
                check=alive(group),
            )
            holder.commit()
    assert slack.arrived >= 2, "both replicas checked their token (and were released together)"

    slack.wait_for(lambda: slack.top_level(), timeout=10)
    settle(group)

    assert len(slack.top_level()) == 1, "exactly one drill message in the channel"
    assert len(slack.posts(thread=False)) == 1, "only one chat.postMessage for the drill"
    rows = db.query(database_url, "SELECT channel, status, ts, claimed_by FROM drills")
    assert rows == [(CHANNEL, "open", slack.top_level()[0]["ts"], None)]
    posted_by = [r.name for r in group if "posted question" in r.logs()]
    assert len(posted_by) == 1, f"exactly one replica posted, not {posted_by}"
    stop_cleanly(group)


# -- 2. one reveal per drill, whoever's scheduler finds it overdue ------------------------------------


def test_two_replicas_reveal_a_drill_posted_by_the_cli_once(
    replicas, replica_env, slack, database_url, run_cli, make_clock, db, eventually
):
    env = replica_env(database_url)
    slack.delays["chat.postMessage"] = 0.3  # a reveal in flight is visible to the other replica for a while
    # `drillbot post`, an hour ago, with a one-hour window: both replicas find it overdue when they start.
    posted = run_cli("post", env=env, clock=make_clock(datetime.now(UTC) - timedelta(hours=1, seconds=1)))
    assert posted.returncode == 0, posted.stderr
    assert len(slack.top_level()) == 1
    drill_ts = slack.top_level()[0]["ts"]

    if database_url.startswith("sqlite"):
        group = replicas(env)
        healthy(group)
    else:
        # Both replicas find the drill overdue and then block on their claim (the conditional UPDATE)
        # until the test lets go: only the compare-and-set decides who reveals.
        with pg_connect(database_url) as holder:
            holder.execute("LOCK TABLE drills IN SHARE ROW EXCLUSIVE MODE")  # reads pass, writes wait
            group = replicas(env)
            healthy(group)
            eventually(
                lambda: pg_waiting(holder, "relation = 'drills'::regclass") >= 2,
                30,
                what="both replicas blocked claiming the reveal",
                check=alive(group),
            )
            holder.commit()
    slack.wait_for(lambda: slack.reveals(), timeout=15)
    slack.wait_for(lambda: slack.calls_to("chat.update"), timeout=5)
    settle(group)

    found = slack.reveals()
    assert len(found) == 1, f"one reveal in the thread, got {len(found)}"
    assert found[0]["thread_ts"] == drill_ts
    assert len(slack.posts(thread=True)) == 1, "no second reveal attempt reached Slack"
    updates = slack.calls_to("chat.update")
    assert len(updates) == 1 and updates[0].params["ts"] == drill_ts
    drill_message = slack.top_level()[0]
    assert "closed" in drill_message["text"].lower(), drill_message["text"]
    assert "Closed." in json.dumps(drill_message["blocks"])
    rows = db.query(database_url, "SELECT status, reveal_ts, claimed_by FROM drills")
    assert rows == [("closed", found[0]["ts"], None)]
    revealed_by = [r.name for r in group if "revealed (" in r.logs()]
    assert len(revealed_by) == 1, f"exactly one replica revealed, not {revealed_by}"
    assert len(slack.top_level()) == 1, "the replicas did not post a drill of their own"
    stop_cleanly(group)


# -- 3. one answer per reply, whichever replica Slack delivers it to ---------------------------------


def test_an_answer_delivered_to_both_replicas_counts_once(replicas, replica_env, slack, database_url, run_cli, db):
    env = replica_env(database_url)
    group = replicas(env)
    healthy(group)
    a, b = group[0].sender, group[1].sender
    posted = run_cli("post", env=env)
    assert posted.returncode == 0, posted.stderr
    drill_ts = slack.top_level()[0]["ts"]

    alice = reply_event(drill_ts, user="UALICE", text="use a hash map")
    # The same delivery reaching both replicas at the same instant (a load balancer retrying, say).
    first = run_together(lambda: a.event(alice, event_id="EvALICE001"), lambda: b.event(alice, event_id="EvALICE001"))
    # Slack's redeliveries of that event, each to the other replica than before.
    retry_b = b.event(alice, event_id="EvALICE001", retry_num=1)
    retry_a = a.event(alice, event_id="EvALICE001", retry_num=2)
    # The same message under a new event id (Slack sends some messages twice), again to both at once.
    again = run_together(lambda: a.event(alice, event_id="EvALICE002"), lambda: b.event(alice, event_id="EvALICE002"))
    # Another person's reply, delivered only to the second replica: it does count.
    bob = reply_event(drill_ts, user="UBOB", text="sort first")
    only_b = b.event(bob, event_id="EvBOB00001")
    statuses = [s for s, _ in (*first, retry_b, retry_a, *again, only_b)]
    assert statuses == [200] * 7, statuses

    rows = db.query(
        database_url,
        "SELECT user_id, message_ts, text, deleted FROM answers ORDER BY user_id, message_ts",
    )
    assert [(r[0], r[1], r[2], bool(r[3])) for r in rows] == [
        ("UALICE", alice["ts"], "use a hash map", False),
        ("UBOB", bob["ts"], "sort first", False),
    ]
    board = run_cli("leaderboard", "--format", "json", env=env)
    assert board.returncode == 0, board.stderr
    totals = {row["user_id"]: row["total_answers"] for row in json.loads(board.stdout)}
    assert totals == {"UALICE": 1, "UBOB": 1}
    stop_cleanly(group)


# -- 4. replicas starting together on an empty database -----------------------------------------------


def assert_schema_once(db: Any, url: str, group: list[Any]) -> None:
    assert len(db.query(url, "SELECT version_num FROM alembic_version")) == 1, "alembic_version has one row"
    assert db.query(url, "SELECT COUNT(*) FROM drills") == [(0,)]
    assert db.query(url, "SELECT COUNT(*) FROM answers") == [(0,)]
    migrated = [r.name for r in group if "Running upgrade" in r.logs()]
    assert len(migrated) <= 1, f"the migration ran in more than one replica: {migrated}"


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_two_replicas_starting_together_on_an_empty_database(replicas, replica_env, empty_database_url, db):
    if empty_database_url.startswith("sqlite"):
        assert not sqlite_path(empty_database_url).exists(), "the database file does not exist yet"
    group = replicas(replica_env(empty_database_url))
    healthy(group)
    assert_schema_once(db, empty_database_url, group)
    stop_cleanly(group)


def _opened(pid: int, path: Path) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


def test_two_replicas_blocked_at_the_migration_then_released_together(
    replicas, replica_env, empty_database_url, db, eventually
):
    """Both replicas are held right before the schema upgrade, then let go at once: a true race."""
    url = empty_database_url
    if url.startswith("sqlite"):
        if not Path("/proc/self/fd").is_dir():
            pytest.skip("needs /proc to see when both replicas have opened the database file")
        import sqlite3

        path = sqlite_path(url)
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")  # an empty file, locked: every other connection waits
            group = replicas(replica_env(url))
            eventually(
                lambda: all(_opened(r.pid, path) for r in group),
                30,
                what="both replicas opened the file",
                check=alive(group),
            )
            # Opening the file comes right before the locked read; waiting in SQLite's busy handler is not
            # visible from outside, so give both a moment to get there.
            time.sleep(0.3)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    else:
        with pg_connect(url) as holder:
            holder.autocommit = True
            holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            group = replicas(replica_env(url))
            eventually(
                lambda: pg_waiting(holder, "locktype = 'advisory'") >= 2,
                30,
                what="both replicas waited for the migration lock",
                check=alive(group),
            )
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    healthy(group)
    assert_schema_once(db, url, group)
    stop_cleanly(group)
