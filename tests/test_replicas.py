"""Several `drillbot run` processes on one database: every step happens once, whoever does it.

Each test starts REAL processes (`python -m bot run --http`) against one fake Slack and one database,
on both backends (the `database_url` fixture: a SQLite file and a scratch PostgreSQL database). SQLite is
the single-host path, but two processes on one host (replicas, or the server and the CLI) share its file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import BOT_TOKEN, CHANNEL, SIGNING_SECRET, TEST_BANK, SlackSender, reply_event
from tests.fakes.slack import FakeSlack
from tests.test_cli import assert_no_token, cli, free_port

NEVER = "0 0 1 1 *"
EVERY_MINUTE = "* * * * *"
SETTLE_SECONDS = 1.2  # six scheduler ticks of each replica (DRILL_TICK_SECONDS=0.2)
MIGRATION_LOCK_KEY = 7_412_903_118  # storage/migrations/env.py

Env = dict[str, str]


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
def env(slack: GatedSlack, database_url: str) -> Env:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DRILL_"))}
    base.pop("DRILLBOT_DEBUG", None)
    base.update(
        SLACK_API_URL=slack.url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        DRILL_CHANNEL=CHANNEL,
        DRILL_SCHEDULE=NEVER,
        DRILL_ANSWER_WINDOW="1h",
        DRILL_TICK_SECONDS="0.2",
        DATABASE_URL=database_url,
        QUESTIONS_FILE=str(TEST_BANK.resolve()),
        PYTHONUNBUFFERED="1",
    )
    return base


# -- replica processes --------------------------------------------------------------------------------


class Replica:
    """One `python -m bot run --http` process, its output in files."""

    def __init__(self, name: str, env: Env, cwd: Path) -> None:
        self.name = name
        self.port = free_port()
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", "run", "--http", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=cwd,
                stdout=stdout,
                stderr=stderr,
            )
        self.sender = SlackSender(f"http://127.0.0.1:{self.port}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 12) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise AssertionError(f"{self.name} did not stop within {timeout}s of SIGTERM") from None


@pytest.fixture
def replicas(env: Env, tmp_path: Path) -> Iterator[Callable[..., list[Replica]]]:
    """Starts replicas (back to back); every one is stopped afterwards, even when the test failed."""
    started: list[Replica] = []

    def launch(count: int = 2, **overrides: str) -> list[Replica]:
        run_env = dict(env, **overrides)
        group = [Replica(f"replica{len(started) + i + 1}", run_env, tmp_path) for i in range(count)]
        started.extend(group)
        return group

    yield launch
    for replica in started:
        replica.terminate()
    for replica in started:
        if replica.process.poll() is None:
            try:
                replica.process.wait(timeout=12)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(timeout=5)


def healthy(group: list[Replica], timeout: float = 20) -> None:
    """Every replica answers /healthz 200 with the database up and the scheduler running."""
    pending = list(group)
    deadline = time.monotonic() + timeout
    while pending:
        for replica in group:
            assert replica.process.poll() is None, f"{replica.name} exited:\n{replica.logs()}"
        for replica in list(pending):
            try:
                status, body = replica.sender.get("/healthz")
            except OSError:
                continue
            if status == 200:
                health = json.loads(body)
                assert health["database"] == "ok", (replica.name, health)
                assert health["scheduler"] == "running", (replica.name, health)
                pending.remove(replica)
        assert time.monotonic() < deadline, f"/healthz not 200 within {timeout}s: {[r.name for r in pending]}"
        time.sleep(0.1)


def stop_cleanly(group: list[Replica]) -> None:
    """SIGTERM every replica; each exits 0 and its output shows no error and no token."""
    for replica in group:
        replica.terminate()
    for replica in group:
        code = replica.wait_stopped()
        logs = replica.logs()
        assert code == 0, f"{replica.name} exited {code}:\n{logs}"
        assert_no_token(logs)
        assert "traceback" not in logs.lower(), f"{replica.name}:\n{logs}"
        assert "error" not in logs.lower(), f"{replica.name}:\n{logs}"


def wait_until(predicate: Callable[[], bool], group: list[Replica], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for replica in group:
            assert replica.process.poll() is None, f"{replica.name} exited:\n{replica.logs()}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def pg_connect(database_url: str) -> Any:
    import psycopg

    return psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://", 1))


def pg_waiting(conn: Any, condition: str) -> int:
    """How many sessions wait for a lock matching `condition` in this database."""
    sql = f"SELECT COUNT(*) FROM pg_locks WHERE {condition} AND NOT granted AND database = "
    sql += "(SELECT oid FROM pg_database WHERE datname = current_database())"
    return int(conn.execute(sql).fetchone()[0])


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def top_level(slack: FakeSlack) -> list[dict[str, Any]]:
    with slack.lock:
        return [m for m in slack.messages[CHANNEL] if not m.get("thread_ts")]


def reveals(slack: FakeSlack) -> list[dict[str, Any]]:
    with slack.lock:
        return [
            m
            for m in slack.messages[CHANNEL]
            if m.get("thread_ts") and (m.get("metadata") or {}).get("event_type") == "drillbot_reveal"
        ]


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


def test_two_schedulers_due_at_the_same_moment_post_one_drill(replicas, slack, env, tmp_path, database_url):
    # Slack answers slowly, so a replica that comes second keeps meeting the drill while it is being posted.
    slack.delays["chat.postMessage"] = 0.5
    if database_url.startswith("sqlite"):
        group = replicas(DRILL_SCHEDULE=EVERY_MINUTE, DRILL_ANSWER_WINDOW="1d")
        healthy(group)
    else:
        # Both replicas read "no drill today" and then block on their INSERT until the test lets go: the
        # true race, decided by the unique constraint alone.
        upgraded = cli(env, tmp_path, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        with pg_connect(database_url) as holder:
            holder.execute("LOCK TABLE drills IN SHARE ROW EXCLUSIVE MODE")  # reads pass, writes wait
            group = replicas(DRILL_SCHEDULE=EVERY_MINUTE, DRILL_ANSWER_WINDOW="1d")
            healthy(group)
            wait_until(
                lambda: pg_waiting(holder, "relation = 'drills'::regclass") >= 2,
                group,
                "both replicas blocked inserting today's drill",
            )
            holder.commit()
    assert slack.arrived >= 2, "both replicas checked their token (and were released together)"

    slack.wait_for(lambda: top_level(slack), timeout=10)
    time.sleep(SETTLE_SECONDS)

    assert len(top_level(slack)) == 1, "exactly one drill message in the channel"
    assert len(slack.posts(thread=False)) == 1, "only one chat.postMessage for the drill"
    rows = query(database_url, "SELECT channel, status, ts, claimed_by FROM drills")
    assert rows == [(CHANNEL, "open", top_level(slack)[0]["ts"], None)]
    posted_by = [r.name for r in group if "posted question" in r.logs()]
    assert len(posted_by) == 1, f"exactly one replica posted, not {posted_by}"
    stop_cleanly(group)


# -- 2. one reveal per drill, whoever's scheduler finds it overdue ------------------------------------


def test_two_replicas_reveal_a_drill_posted_by_the_cli_once(replicas, slack, env, tmp_path, database_url):
    slack.delays["chat.postMessage"] = 0.3  # a reveal in flight is visible to the other replica for a while
    group = replicas(DRILL_ANSWER_WINDOW="3s")
    healthy(group)

    posted = cli(env, tmp_path, "post", DRILL_ANSWER_WINDOW="3s")
    assert posted.returncode == 0, posted.stderr
    assert len(top_level(slack)) == 1
    drill_ts = top_level(slack)[0]["ts"]

    if database_url.startswith("postgresql"):
        # Both replicas find the drill overdue and then block on their claim (the conditional UPDATE)
        # until the test lets go: only the compare-and-set decides who reveals.

        with pg_connect(database_url) as holder:
            holder.execute("LOCK TABLE drills IN SHARE ROW EXCLUSIVE MODE")  # reads pass, writes wait
            wait_until(
                lambda: pg_waiting(holder, "relation = 'drills'::regclass") >= 2,
                group,
                "both replicas blocked claiming the reveal",
            )
            holder.commit()
    slack.wait_for(lambda: reveals(slack), timeout=15)
    slack.wait_for(lambda: slack.calls_to("chat.update"), timeout=5)
    time.sleep(SETTLE_SECONDS)

    found = reveals(slack)
    assert len(found) == 1, f"one reveal in the thread, got {len(found)}"
    assert found[0]["thread_ts"] == drill_ts
    assert len(slack.posts(thread=True)) == 1, "no second reveal attempt reached Slack"
    updates = slack.calls_to("chat.update")
    assert len(updates) == 1 and updates[0].params["ts"] == drill_ts
    drill_message = top_level(slack)[0]
    assert "closed" in drill_message["text"].lower(), drill_message["text"]
    assert "Closed." in json.dumps(drill_message["blocks"])
    rows = query(database_url, "SELECT status, reveal_ts, claimed_by FROM drills")
    assert rows == [("closed", found[0]["ts"], None)]
    revealed_by = [r.name for r in group if "revealed (" in r.logs()]
    assert len(revealed_by) == 1, f"exactly one replica revealed, not {revealed_by}"
    assert len(top_level(slack)) == 1, "the replicas did not post a drill of their own"
    stop_cleanly(group)


# -- 3. one answer per reply, whichever replica Slack delivers it to ---------------------------------


def test_an_answer_delivered_to_both_replicas_counts_once(replicas, slack, env, tmp_path, database_url):
    group = replicas()
    healthy(group)
    a, b = group[0].sender, group[1].sender
    posted = cli(env, tmp_path, "post")
    assert posted.returncode == 0, posted.stderr
    drill_ts = top_level(slack)[0]["ts"]

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

    rows = query(
        database_url,
        "SELECT user_id, message_ts, text, deleted FROM answers ORDER BY user_id, message_ts",
    )
    assert [(r[0], r[1], r[2], bool(r[3])) for r in rows] == [
        ("UALICE", alice["ts"], "use a hash map", False),
        ("UBOB", bob["ts"], "sort first", False),
    ]
    board = cli(env, tmp_path, "leaderboard", "--format", "json")
    assert board.returncode == 0, board.stderr
    totals = {row["user_id"]: row["total_answers"] for row in json.loads(board.stdout)}
    assert totals == {"UALICE": 1, "UBOB": 1}
    stop_cleanly(group)


# -- 4. replicas starting together on an empty database -----------------------------------------------


def assert_schema_once(url: str, group: list[Replica]) -> None:
    assert len(query(url, "SELECT version_num FROM alembic_version")) == 1, "alembic_version has one row"
    assert query(url, "SELECT COUNT(*) FROM drills") == [(0,)]
    assert query(url, "SELECT COUNT(*) FROM answers") == [(0,)]
    migrated = [r.name for r in group if "Running upgrade" in r.logs()]
    assert len(migrated) <= 1, f"the migration ran in more than one replica: {migrated}"


def test_two_replicas_starting_together_on_an_empty_database(replicas, database_url, tmp_path):
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "drills.db").exists(), "the database file does not exist yet"
    group = replicas()
    healthy(group)
    assert_schema_once(database_url, group)
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


def test_two_replicas_blocked_at_the_migration_then_released_together(replicas, database_url, tmp_path):
    """Both replicas are held right before the schema upgrade, then let go at once: a true race."""
    if database_url.startswith("sqlite"):
        if not Path("/proc/self/fd").is_dir():
            pytest.skip("needs /proc to see when both replicas have opened the database file")
        import sqlite3

        path = tmp_path / "drills.db"
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")  # an empty file, locked: every other connection waits
            group = replicas()
            wait_until(lambda: all(_opened(r.pid, path) for r in group), group, "both replicas opened the file")
            time.sleep(0.3)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    else:
        with pg_connect(database_url) as holder:
            holder.autocommit = True
            holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            group = replicas()
            wait_until(
                lambda: pg_waiting(holder, "locktype = 'advisory'") >= 2,
                group,
                "both replicas waited for the migration lock",
            )
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    healthy(group)
    assert_schema_once(database_url, group)
    stop_cleanly(group)
