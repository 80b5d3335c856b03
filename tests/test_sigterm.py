"""SIGTERM on `drillbot run --http` (a subprocess): a graceful, bounded stop.

The process stops accepting connections at once, finishes what it already acknowledged (an answer on its
way to response_url), stops the scheduler and exits 0 within 10 s. Work that cannot finish in time (a
chat.postMessage slower than the stop deadline) is abandoned, and the next start neither loses the drill
nor posts it twice.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Drill, DrillStatus
from tests.conftest import BOT_TOKEN, CHANNEL, SIGNING_SECRET, TEST_BANK, SlackSender
from tests.fakes.slack import Failure, FakeSlack
from tests.fakes.workspace import assert_no_token

NEVER = "off"
EVERY_MINUTE = "* * * * *"  # with a 1h window: today's drill is due as soon as the bot starts
EXIT_LIMIT = 10.0
pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

Env = dict[str, str]


@pytest.fixture
def slack_api() -> Iterator[FakeSlack]:
    """The fake Slack, with message timestamps near the real time (a subprocess cannot take a clock).

    Adoption searches the channel history from the start of the drill's day, so the messages must
    carry today's timestamps, as Slack's do.
    """
    fake = FakeSlack()
    fake._ts = time.time()
    fake.start()
    yield fake
    fake.stop()


def make_env(fake: FakeSlack, tmp_path: Path, **overrides: str) -> Env:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DRILL_"))}
    env.pop("DRILLBOT_DEBUG", None)
    env.update(
        SLACK_API_URL=fake.url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        DRILL_CHANNEL=CHANNEL,
        DRILL_SCHEDULE=NEVER,
        DRILL_ANSWER_WINDOW="1h",
        DRILL_TICK_SECONDS="0.2",
        DATABASE_URL=f"sqlite:///{tmp_path / 'drills.db'}",
        QUESTIONS_FILE=str(TEST_BANK.resolve()),
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


Running = Any  # tests/support/processes.py: BotProcess (process, port, logs())


@pytest.fixture
def launch(launch_run: Callable[..., Running]) -> Iterator[Callable[[Env, str], Running]]:
    def start(env: Env, name: str) -> Running:
        running = launch_run(env=env, name=name)
        running.wait_healthy()
        return running

    yield start


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def terminate(running: Running) -> tuple[int, float]:
    """SIGTERM; returns (exit code, seconds until the process was gone)."""
    sent = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    try:
        code = running.process.wait(timeout=EXIT_LIMIT + 5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_LIMIT + 5:.0f} s after SIGTERM; log:\n{running.logs()[-3000:]}")
    return code, time.monotonic() - sent


def test_sigterm_finishes_the_in_flight_answer_and_exits_0(slack_api, tmp_path, launch):
    bot = launch(make_env(slack_api, tmp_path), "run")
    slack_api.delays["response_url"] = 3
    sender = SlackSender(f"http://127.0.0.1:{bot.port}")

    acked = time.monotonic()
    status, _ = sender.command("", response_url=slack_api.response_url("inflight"))
    ack_seconds = time.monotonic() - acked
    assert status == 200 and ack_seconds < 1.5, f"ack took {ack_seconds:.2f} s"

    sent = time.monotonic()
    bot.process.send_signal(signal.SIGTERM)
    # Stops accepting at once, while the answer is still on its way.
    refused_while_alive = False
    while bot.process.poll() is None and time.monotonic() - sent < 2.5:
        if refuses(bot.port):
            refused_while_alive = bot.process.poll() is None
            break
        time.sleep(0.05)
    try:
        code = bot.process.wait(timeout=EXIT_LIMIT + 5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after SIGTERM; log:\n{bot.logs()[-3000:]}")
    gone = time.monotonic()
    exit_seconds = gone - sent
    logs = bot.logs()

    assert code == 0, logs[-3000:]
    assert exit_seconds < EXIT_LIMIT, f"exited {exit_seconds:.2f} s after SIGTERM"
    # The acknowledged command was answered in full before the process went away.
    answers = slack_api.calls_to("response_url")
    assert len(answers) == 1, answers
    answer = answers[0]
    assert answer.status == 200 and answer.params.get("response_type") == "ephemeral"
    done = answer.finished
    assert done is not None, "the response_url call was cut off"
    assert done - answer.at >= 3 - 0.1, "the slow answer did not take its full time"
    assert exit_seconds >= 3 - 0.5, f"exited after {exit_seconds:.2f} s, before the 3 s answer could finish"
    assert refused_while_alive, "connections were still accepted while the process finished its work after SIGTERM"
    # After exit the port is closed; the drain was clean (scheduler and listeners stopped in time).
    assert refuses(bot.port)
    assert "jobs or listeners still running" not in logs
    assert logs.rstrip().endswith("stopped"), logs[-2000:]
    assert "Traceback" not in logs, logs[-3000:]
    assert_no_token(logs)


def drill_row(database_url: str) -> tuple[str, str | None, int] | None:
    db = Database(database_url)
    try:
        with db.transaction() as session:
            drills = list(session.scalars(select(Drill).where(Drill.channel == CHANNEL)))
            if not drills:
                return None
            assert len(drills) == 1, "one drill for the day"
            return drills[0].status, drills[0].ts, drills[0].id
    finally:
        db.dispose()


def top_level_messages(fake: FakeSlack) -> list[dict]:
    with fake.lock:
        return [m for m in fake.messages[CHANNEL] if not m.get("thread_ts")]


@pytest.mark.parametrize(
    "slack_behaviour",
    [
        # Slack is slow and acts only after 20 s, when the process is long gone: restart once it did.
        "acts_late",
        # Slack never acts on the abandoned call (it answers 500 after 20 s): the restart must post.
        "never_acts",
    ],
)
def test_sigterm_during_a_slow_scheduled_post_exits_in_time_and_the_restart_posts_once(
    slack_api, tmp_path, launch, slack_behaviour, db
):
    env = make_env(slack_api, tmp_path, DRILL_SCHEDULE=EVERY_MINUTE)
    if slack_behaviour == "acts_late":
        slack_api.delays["chat.postMessage"] = 20
    else:
        slack_api.fail_next("chat.postMessage", Failure(status=500, delay=20))
    first = launch(env, "first")
    slow = slack_api.wait_for(lambda: slack_api.calls_to("chat.postMessage"), timeout=10)[0]
    assert slow.finished is None

    code, exit_seconds = terminate(first)
    first_logs = first.logs()
    assert code == 0, first_logs[-3000:]
    assert exit_seconds < EXIT_LIMIT, f"exited {exit_seconds:.2f} s after SIGTERM"
    assert refuses(first.port)
    assert slow.finished is None, "the slow call was still in flight at Slack when the process exited"
    status, _ts, drill_id = drill_row(env["DATABASE_URL"])
    assert status == DrillStatus.POSTING, "the abandoned post stays claimed, for the next start to reconcile"
    assert "still running at the stop deadline" in first_logs, first_logs[-3000:]
    assert_no_token(first_logs)

    slack_api.delays.pop("chat.postMessage", None)
    if slack_behaviour == "acts_late":
        slack_api.wait_for(lambda: slow.finished, timeout=25)
        assert len(top_level_messages(slack_api)) == 1, "Slack did post it, late"

    db.lease_runs_out(env["DATABASE_URL"])  # claims trust only their lease: let it run out
    second = launch(env, "second")

    def posted() -> tuple[str, str | None, int] | None:
        row = drill_row(env["DATABASE_URL"])
        return row if row is not None and row[0] == DrillStatus.OPEN else None

    status, ts, same_id = slack_api.wait_for(posted, timeout=10)
    second.wait_ticks()  # a few more scheduler ticks: nothing else may be posted
    messages = top_level_messages(slack_api)
    assert len(messages) == 1, f"the drill was posted {len(messages)} times"
    assert same_id == drill_id
    assert ts == messages[0]["ts"], "the database points at the one message in the channel"
    assert messages[0]["metadata"]["event_payload"]["drill_id"] == drill_id
    second_logs_so_far = second.logs()
    if slack_behaviour == "acts_late":
        assert "adopted" in second_logs_so_far, second_logs_so_far[-3000:]
        assert len(slack_api.calls_to("chat.postMessage")) == 1, "adopted, not posted again"
    else:
        assert len(slack_api.calls_to("chat.postMessage")) == 2, "posted again, once"

    code, exit_seconds = terminate(second)
    assert code == 0 and exit_seconds < EXIT_LIMIT
    logs = second.logs()
    assert "Traceback" not in logs, logs[-3000:]
    assert_no_token(logs)
