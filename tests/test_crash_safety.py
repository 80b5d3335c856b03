"""Crash safety: real `python -m bot` processes killed with SIGKILL in the middle of a Slack call.

Each scenario leaves the database in the state a crash leaves (a step claimed by a process that is gone)
and restarts drillbot two ways: the one-shot command again, and a running bot (`drillbot run`'s
`Bot`, in-process here: the restart is not what is killed). The restarted drillbot must take the step
over once the dead owner's lease has run out (claims trust only their lease: replicas may share a
hostname and PID; each test moves the claim's start back by a lease rather than waiting it out), look in
Slack for the message the dead process may have posted
(message metadata carries the drill id), and finish the step exactly once: adopt what Slack has, post
what it lacks.

Note on timestamps: the fake Slack numbers messages from 2023 by default, but these processes run on the
real clock and adoption looks for messages from the start of today, so the fake hands out current
timestamps here, as Slack does.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain.claims import LEASE
from storage import repo
from storage.db import Database
from storage.models import Drill, DrillStatus
from tests.fakes.slack import Failure, FakeSlack
from tests.fakes.workspace import CHANNEL, assert_no_token

# The dead process's call is answered late, long after it was killed: only its side effect counts.
SLOW_SUCCESS = Failure(act=True, delay=10, status=200)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
pytestmark = pytest.mark.subprocess


@pytest.fixture
def live_slack(fake_slack: FakeSlack) -> FakeSlack:
    return fake_slack.use_real_timestamps()


def dead_pid() -> int:
    """The pid of a process that has already exited (and was reaped)."""
    proc = subprocess.Popen(["sleep", "0"])
    proc.wait(timeout=10)
    return proc.pid


def clean_logs(caplog: pytest.LogCaptureFixture) -> str:
    """The in-process bot's log: no token, no traceback."""
    text = caplog.text
    assert_no_token(text)
    assert "Traceback" not in text, text
    return text


# -- 1. killed while posting; Slack did get the message ---------------------------------------------


def kill_while_posting(launch: Any, env: dict[str, str], fake: FakeSlack, db: Any, url: str) -> dict[str, Any]:
    """Start `drillbot post`, SIGKILL it once Slack has stored its message (its reply is still pending)."""
    fake.fail_next("chat.postMessage", SLOW_SUCCESS)
    first = launch("post", env=env, name="post-killed")
    fake.wait_for(lambda: fake.top_level(), timeout=30)
    first.sigkill()

    message = fake.top_level()[0]
    drill = db.one_drill(url)
    assert drill.status == DrillStatus.POSTING, "the killed process never learned the ts"
    assert drill.ts is None
    assert drill.claimed_by is not None and f":{first.pid}:" in drill.claimed_by
    assert fake.drill_id_of(message) == drill.id
    db.lease_runs_out(url)
    return message


@pytest.mark.parametrize("restart", ["post", "run"])
def test_killed_while_posting_the_message_is_adopted_after_restart(
    restart, launch, bot_env, run_cli, start_bot, live_slack, database_url, db, make_clock, wait_ticks, caplog
) -> None:
    fake = live_slack
    env = bot_env(database_url=database_url, drill_answer_window="1h")
    message = kill_while_posting(launch, env, fake, db, database_url)
    clock = make_clock()  # the real time, until the test moves it past the deadline

    if restart == "post":
        again = run_cli("post", env=env, clock=clock)
        assert again.returncode == 0, again.stderr
        assert "Posted" in again.stdout and message["ts"] in again.stdout, again.stdout
        drill = db.one_drill(database_url)
        assert drill.status == DrillStatus.OPEN
        assert drill.ts == message["ts"]
        assert drill.claimed_by is None

        # Revealed as usual once the deadline has passed.
        clock.set(drill.deadline + timedelta(seconds=1))
        revealed = run_cli("reveal", "--due", env=env, clock=clock)
        assert revealed.returncode == 0, revealed.stderr
        assert "Revealed 1" in revealed.stdout, revealed.stdout
    else:
        caplog.set_level(logging.INFO)
        bot, _ = start_bot(clock=clock, drill_schedule="off", drill_answer_window="1h")
        drill = db.wait_recorded(bot, CHANNEL, message["ts"])
        clock.set(drill.deadline + timedelta(seconds=1))
        fake.wait_for(lambda: fake.thread_replies())
        db.wait_closed(bot, drill.id)
        wait_ticks(bot)
        assert "adopted" in clean_logs(caplog)

    # Exactly one drill message (the dead process's), never posted again; exactly one reveal in its thread.
    assert len(fake.posts(thread=False)) == 1, "the restart posted the drill a second time"
    assert [m["ts"] for m in fake.top_level()] == [message["ts"]]
    history = fake.calls_to("conversations.history")
    assert history, "the restart did not look in Slack before deciding"
    assert str(history[0].params.get("include_all_metadata")).lower() in ("1", "true")
    reveals = fake.thread_replies()
    assert len(reveals) == 1, reveals
    assert reveals[0]["thread_ts"] == message["ts"]
    assert len(fake.posts(thread=True)) == 1
    drill = db.one_drill(database_url)
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


@sqlite_only
@pytest.mark.parametrize("restart", ["post", "run"])
def test_killed_before_slack_had_the_message_the_drill_is_posted_once(
    restart, run_cli, bot_env, start_bot, live_slack, database_url, db, wait_ticks, caplog
) -> None:
    fake = live_slack
    env = bot_env(database_url=database_url, drill_answer_window="1h")
    orphan = record_orphaned_intent(database_url, window=timedelta(hours=1))
    assert orphan.status == DrillStatus.POSTING

    if restart == "post":
        posted = run_cli("post", env=env)
        assert posted.returncode == 0, posted.stderr
        assert "Posted" in posted.stdout and "cache-stampede" in posted.stdout, posted.stdout
        again = run_cli("post", env=env)
        assert again.returncode == 0, again.stderr
        assert "already posted" in again.stdout, again.stdout
    else:
        caplog.set_level(logging.INFO)
        bot, _ = start_bot(drill_schedule="off", drill_answer_window="1h")
        db.wait_recorded(bot, CHANNEL, fake.wait_for(lambda: fake.top_level())[0]["ts"])
        wait_ticks(bot)
        clean_logs(caplog)

    # Posted exactly once, for the recorded drill, after looking in Slack for an earlier copy.
    posts = fake.posts(thread=False)
    assert len(posts) == 1, [p.params for p in posts]
    assert len(fake.top_level()) == 1
    message = fake.top_level()[0]
    assert fake.drill_id_of(message) == orphan.id
    order = fake.methods()
    assert "conversations.history" in order, "the takeover did not look in Slack first"
    assert order.index("conversations.history") < order.index("chat.postMessage"), order
    drill = db.one_drill(database_url)
    assert drill.id == orphan.id
    assert drill.question_id == "cache-stampede"
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == message["ts"]
    assert drill.claimed_by is None


# -- 3. killed while revealing; Slack did get the reveal --------------------------------------------


@sqlite_only
@pytest.mark.parametrize("restart", ["reveal", "run"])
def test_killed_while_revealing_the_reveal_is_adopted_after_restart(
    restart, launch, bot_env, run_cli, start_bot, live_slack, database_url, db, make_clock, wait_ticks, caplog
) -> None:
    fake = live_slack
    env = bot_env(database_url=database_url, drill_answer_window="1h")
    # Posted two hours ago with a one-hour window: overdue now, on the real clock the processes read.
    two_hours_ago = make_clock(datetime.now(UTC) - timedelta(hours=2))
    posted = run_cli("post", env=env, clock=two_hours_ago)
    assert posted.returncode == 0, posted.stderr
    drill_message = fake.top_level()[0]

    fake.fail_next("chat.postMessage", SLOW_SUCCESS)
    first = launch("reveal", "--due", env=env, name="reveal-killed")
    fake.wait_for(lambda: fake.thread_replies(), timeout=30)
    first.sigkill()
    reveal = fake.thread_replies()[0]
    drill = db.one_drill(database_url)
    assert drill.status == DrillStatus.REVEALING
    assert drill.claimed_by is not None and f":{first.pid}:" in drill.claimed_by
    assert fake.calls_to("chat.update") == []
    db.lease_runs_out(database_url)

    if restart == "reveal":
        again = run_cli("reveal", "--due", env=env)
        assert again.returncode == 0, again.stderr
        assert "Revealed 1" in again.stdout, again.stdout
        after = run_cli("reveal", "--due", env=env)
        assert after.returncode == 0, after.stderr
        assert "Nothing to reveal" in after.stdout, after.stdout
    else:
        caplog.set_level(logging.INFO)
        bot, _ = start_bot(drill_schedule="off", drill_answer_window="1h")
        db.wait_closed(bot, drill.id)
        wait_ticks(bot)
        assert "revealed" in clean_logs(caplog)

    # The reveal the dead process posted is adopted (found in the thread by its metadata), not repeated.
    assert fake.thread_replies() == [reveal], fake.thread_replies()
    assert len(fake.posts(thread=True)) == 1, "the reveal was posted a second time"
    replies = fake.calls_to("conversations.replies")
    assert replies, "the takeover did not look in the thread first"
    assert replies[0].params.get("ts") == drill_message["ts"]
    assert [m["ts"] for m in fake.top_level()] == [drill_message["ts"]]
    updates = fake.calls_to("chat.update")
    assert len(updates) == 1 and updates[0].params["ts"] == drill_message["ts"]
    drill = db.one_drill(database_url)
    assert drill.status == DrillStatus.CLOSED
    assert drill.reveal_ts == reveal["ts"]
    assert drill.claimed_by is None
