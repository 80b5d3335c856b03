"""Crash safety: real `python -m bot` processes killed with SIGKILL in the middle of a Slack call.

Each scenario leaves the database in the state a crash leaves (a step claimed by a process that is gone)
and restarts drillbot two ways: the one-shot command again, and a long-running `drillbot run --http`.
The restarted process must take the step over once the dead owner's lease has run out (claims trust
only their lease: replicas may share a hostname and PID; each test moves the claim's start back by a
lease rather than waiting it out), look in Slack for the message the dead process may have posted
(message metadata carries the drill id), and finish the step exactly once: adopt what Slack has, post
what it lacks.

Note on timestamps: the fake Slack numbers messages from 2023 by default, but these processes run on the
real clock and adoption looks for messages from the start of today, so each test makes the fake hand out
current timestamps, as Slack does.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.domain.claims import LEASE
from storage import repo
from storage.db import Database
from storage.models import Drill, DrillStatus
from tests.conftest import CHANNEL, SIGNING_SECRET
from tests.fakes.slack import Failure, FakeSlack
from tests.test_cli import Env, assert_no_token, cli, cli_env, free_port  # noqa: F401  (cli_env: fixture)

# The dead process's call is answered late, long after it was killed: only its side effect counts.
SLOW_SUCCESS = Failure(act=True, delay=10, status=200)


# -- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def live_slack(fake_slack: FakeSlack) -> FakeSlack:
    """The fake Slack handing out message timestamps of the real clock, like Slack."""
    with fake_slack.lock:
        fake_slack._ts = time.time()
    return fake_slack


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crash.db'}"


class Spawned:
    """`python -m bot ARGS` running in the background, its output in files."""

    def __init__(self, env: Env, cwd: Path, *args: str, name: str) -> None:
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", *args], env=env, cwd=cwd, stdout=stdout, stderr=stderr
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def sigkill(self) -> None:
        assert self.process.poll() is None, f"the process ended before it could be killed:\n{self.output()}"
        self.process.kill()
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def sigterm(self, timeout: float = 15) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def spawn() -> Iterator[Any]:
    started: list[Spawned] = []

    def factory(env: Env, cwd: Path, *args: str, name: str) -> Spawned:
        proc = Spawned(env, cwd, *args, name=name)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.cleanup()


def all_drills(url: str) -> list[Drill]:
    db = Database(url)
    try:
        with db.transaction() as session:
            return list(session.scalars(select(Drill).order_by(Drill.id)))
    finally:
        db.dispose()


def one_drill(url: str) -> Drill:
    rows = all_drills(url)
    assert len(rows) == 1, rows
    return rows[0]


def wait_until(predicate: Any, timeout: float, what: str, proc: Spawned | None = None) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.process.poll() is not None:
            raise AssertionError(f"the process exited ({proc.process.returncode}) before {what}:\n{proc.output()}")
        time.sleep(0.05)
    detail = f":\n{proc.output()}" if proc is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def top_level(fake: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in fake.messages[CHANNEL] if not m.get("thread_ts")]


def thread_replies(fake: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in fake.messages[CHANNEL] if m.get("thread_ts")]


def drill_id_of(message: dict[str, Any]) -> int:
    return int(message["metadata"]["event_payload"]["drill_id"])


def method_order(fake: FakeSlack) -> list[str]:
    with fake.lock:
        return [c.method for c in fake.calls]


def dead_pid() -> int:
    """The pid of a process that has already exited (and was reaped)."""
    proc = subprocess.Popen(["sleep", "0"])
    proc.wait(timeout=10)
    return proc.pid


def lease_runs_out(url: str) -> None:
    """Time passes for the dead owner's claim: its lease started more than a lease ago."""
    db = Database(url)
    try:
        with db.transaction() as session:
            for drill in session.scalars(select(Drill).where(Drill.claimed_by.is_not(None))):
                drill.claimed_at = drill.claimed_at - LEASE - timedelta(seconds=1)
    finally:
        db.dispose()


def run_env(env: Env, **extra: str) -> Env:
    return dict(env, SLACK_SIGNING_SECRET=SIGNING_SECRET, DRILL_TICK_SECONDS="0.2", **extra)


def start_run(spawn: Any, env: Env, cwd: Path, name: str = "run") -> Spawned:
    return spawn(env, cwd, "run", "--http", "--host", "127.0.0.1", "--port", str(free_port()), name=name)


def stop_run(proc: Spawned) -> str:
    assert proc.sigterm() == 0, proc.output()
    logs = proc.output()
    assert_no_token(logs)
    assert "Traceback" not in logs, logs
    return logs


def ticks_pass(seconds: float = 0.8) -> None:
    """Let a running bot (DRILL_TICK_SECONDS=0.2) tick several times: time for a duplicate to show."""
    time.sleep(seconds)


# -- 1. killed while posting; Slack did get the message ---------------------------------------------


def kill_while_posting(spawn: Any, env: Env, cwd: Path, fake: FakeSlack, url: str) -> dict[str, Any]:
    """Start `drillbot post`, SIGKILL it once Slack has stored its message (its reply is still pending)."""
    fake.fail_next("chat.postMessage", SLOW_SUCCESS)
    first = spawn(env, cwd, "post", name="post-killed")
    wait_until(lambda: top_level(fake), 20, "Slack to store the drill message", first)
    first.sigkill()

    message = top_level(fake)[0]
    drill = one_drill(url)
    assert drill.status == DrillStatus.POSTING, "the killed process never learned the ts"
    assert drill.ts is None
    assert drill.claimed_by is not None and f":{first.pid}:" in drill.claimed_by
    assert drill_id_of(message) == drill.id
    lease_runs_out(url)
    return message


@pytest.mark.parametrize("restart", ["post", "run"])
def test_killed_while_posting_the_message_is_adopted_after_restart(
    restart: str, cli_env: Env, tmp_path: Path, live_slack: FakeSlack, spawn: Any, database_url: str
) -> None:
    fake = live_slack
    env = dict(cli_env, DATABASE_URL=database_url, DRILL_ANSWER_WINDOW="2s")
    message = kill_while_posting(spawn, env, tmp_path, fake, database_url)

    if restart == "post":
        again = cli(env, tmp_path, "post")
        assert again.returncode == 0, again.stderr
        assert "Posted" in again.stdout and message["ts"] in again.stdout, again.stdout
        drill = one_drill(database_url)
        assert drill.status == DrillStatus.OPEN
        assert drill.ts == message["ts"]
        assert drill.claimed_by is None

        # Revealed as usual once the deadline has passed.
        wait_until(lambda: datetime.now(UTC) > drill.deadline + timedelta(seconds=0.2), 10, "the deadline")
        revealed = cli(env, tmp_path, "reveal", "--due")
        assert revealed.returncode == 0, revealed.stderr
        assert "Revealed 1" in revealed.stdout, revealed.stdout
    else:
        bot = start_run(spawn, run_env(env), tmp_path)
        wait_until(lambda: one_drill(database_url).ts is not None, 20, "the drill to be adopted", bot)
        assert one_drill(database_url).ts == message["ts"]
        wait_until(lambda: thread_replies(fake), 15, "the reveal", bot)
        wait_until(lambda: one_drill(database_url).status == DrillStatus.CLOSED, 10, "the drill to close", bot)
        ticks_pass()
        logs = stop_run(bot)
        assert "adopted" in logs, logs

    # Exactly one drill message (the dead process's), never posted again; exactly one reveal in its thread.
    assert len(fake.posts(thread=False)) == 1, "the restart posted the drill a second time"
    assert top_level(fake) == [message]
    history = fake.calls_to("conversations.history")
    assert history, "the restart did not look in Slack before deciding"
    assert str(history[0].params.get("include_all_metadata")).lower() in ("1", "true")
    reveals = thread_replies(fake)
    assert len(reveals) == 1, reveals
    assert reveals[0]["thread_ts"] == message["ts"]
    assert len(fake.posts(thread=True)) == 1
    drill = one_drill(database_url)
    assert drill.status == DrillStatus.CLOSED
    assert drill.ts == message["ts"]
    assert drill.reveal_ts == reveals[0]["ts"]


# -- 2. killed after recording the intent, before Slack had the message -----------------------------


def record_orphaned_intent(url: str, *, window: timedelta) -> Drill:
    """The state a process leaves when it dies between recording the drill and calling Slack."""
    db = Database(url)
    try:
        db.upgrade()
        now = datetime.now(UTC)
        with db.transaction() as session:
            drill = repo.insert_drill(
                session,
                channel=CHANNEL,
                day=now.date(),  # DRILL_TIMEZONE is UTC
                question_id="cache-stampede",
                question=None,
                deadline=now + window,
                owner=f"{socket.gethostname()}:{dead_pid()}:abcd",
                now=now - LEASE - timedelta(seconds=1),  # and its lease has run out
            )
            assert drill is not None
            return drill
    finally:
        db.dispose()


@pytest.mark.parametrize("restart", ["post", "run"])
def test_killed_before_slack_had_the_message_the_drill_is_posted_once(
    restart: str, cli_env: Env, tmp_path: Path, live_slack: FakeSlack, spawn: Any, sqlite_url: str
) -> None:
    fake = live_slack
    env = dict(cli_env, DATABASE_URL=sqlite_url, DRILL_ANSWER_WINDOW="1h")
    orphan = record_orphaned_intent(sqlite_url, window=timedelta(hours=1))
    assert orphan.status == DrillStatus.POSTING

    if restart == "post":
        posted = cli(env, tmp_path, "post")
        assert posted.returncode == 0, posted.stderr
        assert "Posted" in posted.stdout and "cache-stampede" in posted.stdout, posted.stdout
        again = cli(env, tmp_path, "post")
        assert again.returncode == 0, again.stderr
        assert "already posted" in again.stdout, again.stdout
    else:
        bot = start_run(spawn, run_env(env), tmp_path)
        wait_until(lambda: one_drill(sqlite_url).status == DrillStatus.OPEN, 20, "the drill to be posted", bot)
        ticks_pass()
        stop_run(bot)

    # Posted exactly once, for the recorded drill, after looking in Slack for an earlier copy.
    posts = fake.posts(thread=False)
    assert len(posts) == 1, [p.params for p in posts]
    assert len(top_level(fake)) == 1
    message = top_level(fake)[0]
    assert drill_id_of(message) == orphan.id
    order = method_order(fake)
    assert "conversations.history" in order, "the takeover did not look in Slack first"
    assert order.index("conversations.history") < order.index("chat.postMessage"), order
    drill = one_drill(sqlite_url)
    assert drill.id == orphan.id
    assert drill.question_id == "cache-stampede"
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == message["ts"]
    assert drill.claimed_by is None


# -- 3. killed while revealing; Slack did get the reveal --------------------------------------------


@pytest.mark.parametrize("restart", ["reveal", "run"])
def test_killed_while_revealing_the_reveal_is_adopted_after_restart(
    restart: str, cli_env: Env, tmp_path: Path, live_slack: FakeSlack, spawn: Any, sqlite_url: str
) -> None:
    fake = live_slack
    env = dict(cli_env, DATABASE_URL=sqlite_url, DRILL_ANSWER_WINDOW="1s")
    posted = cli(env, tmp_path, "post")
    assert posted.returncode == 0, posted.stderr
    drill_message = top_level(fake)[0]
    deadline = one_drill(sqlite_url).deadline
    wait_until(lambda: datetime.now(UTC) > deadline + timedelta(seconds=0.2), 10, "the deadline")

    fake.fail_next("chat.postMessage", SLOW_SUCCESS)
    first = spawn(env, tmp_path, "reveal", "--due", name="reveal-killed")
    wait_until(lambda: thread_replies(fake), 20, "Slack to store the reveal", first)
    first.sigkill()
    reveal = thread_replies(fake)[0]
    drill = one_drill(sqlite_url)
    assert drill.status == DrillStatus.REVEALING
    assert drill.claimed_by is not None and f":{first.pid}:" in drill.claimed_by
    assert fake.calls_to("chat.update") == []
    lease_runs_out(sqlite_url)

    if restart == "reveal":
        again = cli(env, tmp_path, "reveal", "--due")
        assert again.returncode == 0, again.stderr
        assert "Revealed 1" in again.stdout, again.stdout
        after = cli(env, tmp_path, "reveal", "--due")
        assert after.returncode == 0, after.stderr
        assert "Nothing to reveal" in after.stdout, after.stdout
    else:
        bot = start_run(spawn, run_env(env), tmp_path)
        wait_until(lambda: one_drill(sqlite_url).status == DrillStatus.CLOSED, 20, "the drill to close", bot)
        ticks_pass()
        logs = stop_run(bot)
        assert "revealed" in logs, logs

    # The reveal the dead process posted is adopted (found in the thread by its metadata), not repeated.
    assert thread_replies(fake) == [reveal], thread_replies(fake)
    assert len(fake.posts(thread=True)) == 1, "the reveal was posted a second time"
    replies = fake.calls_to("conversations.replies")
    assert replies, "the takeover did not look in the thread first"
    assert replies[0].params.get("ts") == drill_message["ts"]
    assert top_level(fake) == [drill_message]
    updates = fake.calls_to("chat.update")
    assert len(updates) == 1 and updates[0].params["ts"] == drill_message["ts"]
    drill = one_drill(sqlite_url)
    assert drill.status == DrillStatus.CLOSED
    assert drill.reveal_ts == reveal["ts"]
    assert drill.claimed_by is None
