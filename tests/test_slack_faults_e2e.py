"""End-to-end: Slack misbehaving while drillbot posts and reveals (5xx, timeouts, refused connections,
rate limits, configuration errors), with the real bot in-process and a fake Slack over real HTTP.

Time is injected and frozen (`start_bot(clock=...)`): a step released after an uncertain failure keeps
the frozen moment as its release time, so moving the clock to just before / exactly at a retry delay
shows precisely when the next attempt is allowed. The clock counts its reads: each scheduler job reads
it once per tick, which is how the tests know the scheduler has ticked without sleeping a guessed while.

Dates are in November 2023, on or before the 14th: the fake Slack numbers messages from ts 1_700_000_000
(2023-11-14 22:13 UTC) and adoption looks for messages from the start of the drill's day.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot import slack_api
from bot.runtime import Bot, Runtime, build_runtime
from bot.scheduler import build_scheduler
from bot.settings import Settings
from storage.models import Drill, DrillStatus
from tests.conftest import CHANNEL
from tests.fakes.slack import Call, Failure, FakeSlack

TUESDAY = datetime(2023, 11, 14, 10, 0, 5, tzinfo=UTC)  # a weekday, 5 s after the 10:00 slot
BEFORE_SLOT = TUESDAY.replace(hour=9, minute=59, second=0)  # same day, the schedule is not due yet

StartBot = Callable[..., tuple[Bot, Any]]

# Every test here runs on SQLite; the backoff tests, whose claims and release times are where the two
# backends differ, also on PostgreSQL. The others exercise the Slack client and the service's decisions,
# which do not depend on the backend (and their PostgreSQL paths are covered in test_posting_e2e), and
# some wait out real retry delays of the Slack client: running them twice would only cost time.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# -- helpers -----------------------------------------------------------------------------------------


class Clock:
    """A frozen, movable clock that counts how often it is read."""

    def __init__(self, moment: datetime) -> None:
        self._moment = moment
        self._lock = threading.Lock()
        self.reads = 0

    def now(self) -> datetime:
        with self._lock:
            self.reads += 1
            return self._moment

    @property
    def moment(self) -> datetime:
        with self._lock:
            return self._moment

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._moment = moment

    def advance(self, **delta: float) -> None:
        self.set(self.moment + timedelta(**delta))


def wait_ticks(clock: Clock, reads: int = 12, timeout: float = 10.0) -> None:
    """Wait until the clock was read `reads` more times (every job reads it once per tick)."""
    target = clock.reads + reads
    deadline = time.monotonic() + timeout
    while clock.reads < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"the scheduler did not tick ({clock.reads}/{target} clock reads)")
        time.sleep(0.02)


def eventually(predicate: Callable[[], Any], timeout: float) -> Any:
    """The predicate's first truthy value within `timeout` seconds, else None (the caller asserts)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.02)


def drills(bot: Bot | Runtime) -> list[Drill]:
    runtime = bot.runtime if isinstance(bot, Bot) else bot
    with runtime.db.transaction() as session:
        return list(session.scalars(select(Drill).order_by(Drill.id)))


def only_drill(bot: Bot | Runtime) -> Drill:
    rows = drills(bot)
    assert len(rows) == 1, rows
    return rows[0]


def top_posts(fake: FakeSlack) -> list[Call]:
    """Every top-level chat.postMessage call, whatever its answer."""
    return [c for c in fake.calls_to("chat.postMessage") if not c.params.get("thread_ts")]


def reveal_posts(fake: FakeSlack) -> list[Call]:
    """Every chat.postMessage call in a thread, whatever its answer."""
    return [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts")]


def top_level(fake: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in fake.messages[CHANNEL] if not m.get("thread_ts")]


def in_thread(fake: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in fake.messages[CHANNEL] if m.get("thread_ts")]


def released(bot: Bot) -> bool:
    """The step in flight was given up (its claim released) after a failure."""
    drill = only_drill(bot)
    return drill.claimed_by is None and drill.status in (DrillStatus.POSTING, DrillStatus.REVEALING)


def closed_port() -> int:
    """A loopback port nothing listens on (bound once to get it, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_not_retried_yet(clock: Clock, calls: Callable[[], list[Call]], count: int, moment: datetime) -> None:
    clock.set(moment)
    wait_ticks(clock)
    assert len(calls()) == count, f"retried too early, at {moment.time()} ({len(calls())} attempts)"


def assert_retried_at(clock: Clock, calls: Callable[[], list[Call]], count: int, moment: datetime) -> None:
    clock.set(moment)
    assert eventually(lambda: len(calls()) >= count, 5), f"not retried at {moment.time()} ({len(calls())} attempts)"
    assert len(calls()) == count, [c.status for c in calls()]


# -- 5xx while posting ---------------------------------------------------------------------------


def test_post_5xx_is_retried_with_growing_backoff_until_it_succeeds(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("chat.postMessage", Failure(status=500), Failure(status=500), Failure(status=500))
    clock = Clock(TUESDAY)
    running, _ = start_bot(clock=clock.now)  # the schedule is due: the scheduler posts on its own

    assert eventually(lambda: len(top_posts(fake_slack)) == 1, 5), "the scheduler did not try to post"
    assert eventually(lambda: released(running), 5), "the failed attempt was not released"
    assert only_drill(running).claimed_at == TUESDAY

    # Attempts 5 s, 10 s and 20 s apart in the (frozen, injected) clock: never earlier.
    released_at = TUESDAY
    for attempt, delay in ((2, 5), (3, 10), (4, 20)):
        assert_not_retried_yet(
            clock, lambda: top_posts(fake_slack), attempt - 1, released_at + timedelta(seconds=delay - 0.5)
        )
        retry_at = released_at + timedelta(seconds=delay)
        assert_retried_at(clock, lambda: top_posts(fake_slack), attempt, retry_at)
        if attempt < 4:
            assert eventually(lambda: released(running), 5), f"attempt {attempt} was not released"
        released_at = retry_at

    drill = eventually(lambda: next((d for d in drills(running) if d.status == DrillStatus.OPEN), None), 5)
    assert drill is not None, only_drill(running)
    wait_ticks(clock)

    calls = top_posts(fake_slack)
    assert [c.status for c in calls] == [500, 500, 500, 200]
    # Not a burst inside the Slack client: the first retry came from the scheduler, well after the failure.
    assert calls[1].at - calls[0].at > 0.5, calls[1].at - calls[0].at
    # Every retry first looked in Slack for a copy the failed attempt might have posted.
    assert len(fake_slack.calls_to("conversations.history")) == 3
    assert len(top_level(fake_slack)) == 1
    assert drill.ts == top_level(fake_slack)[0]["ts"]
    assert drill.claimed_by is None


# -- a timeout while posting ---------------------------------------------------------------------


@sqlite_only
def test_post_timeout_is_uncertain_and_the_retry_adopts_the_message(
    start_bot: StartBot, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_api, "HTTP_TIMEOUT_SECONDS", 1)
    clock = Clock(BEFORE_SLOT)  # the schedule is not due: only the explicit post runs
    running, _ = start_bot(clock=clock.now)
    # Slack stores the message at once but answers after 2 s: past the client's 1 s timeout.
    fake_slack.fail_next("chat.postMessage", Failure(act=True, delay=2, status=200))

    started = time.monotonic()
    outcome = running.runtime.service.post_today()
    assert outcome.result == "retrying", outcome
    assert time.monotonic() - started < 1.9, "the client waited for the late answer instead of timing out"
    assert len(fake_slack.messages[CHANNEL]) == 1  # Slack did post it
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # the timeout was not retried blindly
    assert only_drill(running).status == DrillStatus.POSTING

    wait_ticks(clock)  # within the retry delay nothing happens
    assert len(fake_slack.calls_to("chat.postMessage")) == 1

    clock.advance(seconds=5)
    assert eventually(lambda: only_drill(running).status == DrillStatus.OPEN, 5), only_drill(running)
    wait_ticks(clock)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1, "posted twice"
    assert len(fake_slack.messages[CHANNEL]) == 1
    assert fake_slack.calls_to("conversations.history")
    drill = only_drill(running)
    assert drill.id == outcome.drill_id
    assert drill.ts == fake_slack.messages[CHANNEL][0]["ts"]


# -- Slack unreachable -----------------------------------------------------------------------------


@sqlite_only
def test_connection_refused_is_retried_once_slack_is_reachable(
    make_settings: Callable[..., Settings], fake_slack: FakeSlack
) -> None:
    port = closed_port()
    settings = make_settings(slack_api_url=f"http://127.0.0.1:{port}/api/")
    clock = Clock(BEFORE_SLOT)
    # Not start_bot: a Bot checks the token with auth.test when it starts, which cannot succeed here.
    # The runtime plus the bot's own scheduler is what keeps retrying in `drillbot run`.
    runtime = build_runtime(settings, clock=clock.now)
    scheduler = build_scheduler(runtime.service, tick_seconds=settings.drill_tick_seconds)
    late: FakeSlack | None = None
    scheduler.start()
    try:
        outcome = runtime.service.post_today()
        assert outcome.result == "retrying", outcome
        assert "cannot reach Slack" in outcome.detail, outcome.detail
        drill = only_drill(runtime)
        assert drill.status == DrillStatus.POSTING and drill.claimed_by is None

        late = FakeSlack(port=port).start()
        wait_ticks(clock)
        assert late.calls_to("chat.postMessage") == [], "retried before the retry delay"

        clock.advance(seconds=5)
        assert eventually(lambda: only_drill(runtime).status == DrillStatus.OPEN, 5), only_drill(runtime)
        wait_ticks(clock)

        assert len(late.calls_to("chat.postMessage")) == 1
        assert len(late.messages[CHANNEL]) == 1
        assert only_drill(runtime).ts == late.messages[CHANNEL][0]["ts"]
        assert fake_slack.calls == []  # everything went to SLACK_API_URL
    finally:
        scheduler.shutdown(wait=True)
        runtime.service.close()
        runtime.db.dispose()
        if late is not None:
            late.stop()


# -- rate limits -----------------------------------------------------------------------------------


@sqlite_only
def test_three_rate_limits_in_a_row_are_waited_out_and_the_drill_posted_once(
    start_bot: StartBot, fake_slack: FakeSlack
) -> None:
    limited = Failure(status=429, headers={"Retry-After": "1"})
    clock = Clock(BEFORE_SLOT)
    running, _ = start_bot(clock=clock.now)
    fake_slack.fail_next("chat.postMessage", limited, limited, limited)

    started = time.monotonic()
    outcome = running.runtime.service.post_today()
    elapsed = time.monotonic() - started

    assert outcome.result == "posted", outcome
    calls = fake_slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 429, 429, 200]
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), f"retried before Retry-After: {gaps}"
    assert elapsed >= 2.9, elapsed
    wait_ticks(clock)
    assert len(fake_slack.calls_to("chat.postMessage")) == 4
    assert len(fake_slack.messages[CHANNEL]) == 1
    drill = only_drill(running)
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == outcome.ts == fake_slack.messages[CHANNEL][0]["ts"]


# -- 5xx while revealing ---------------------------------------------------------------------------


def post_and_fail_the_reveal(start_bot: StartBot, fake: FakeSlack, failures: int) -> tuple[Bot, Clock, datetime]:
    """A posted drill whose reveal, at the deadline, gets `failures` 500s; returns when the first was released."""
    clock = Clock(TUESDAY)
    running, _ = start_bot(clock=clock.now)
    assert eventually(lambda: only_drill(running).status == DrillStatus.OPEN if drills(running) else None, 5)
    fake.fail_next("chat.postMessage", *[Failure(status=500) for _ in range(failures)])

    first_try = only_drill(running).deadline + timedelta(seconds=1)
    clock.set(first_try)
    assert eventually(lambda: reveal_posts(fake), 5), "the reveal was not attempted after the deadline"
    assert eventually(lambda: released(running), 5), "the failed reveal was not released"
    assert only_drill(running).status == DrillStatus.REVEALING
    return running, clock, first_try


def test_reveal_5xx_is_retried_with_backoff_and_posted_once(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    running, clock, first_try = post_and_fail_the_reveal(start_bot, fake_slack, failures=2)

    wait_ticks(clock)  # the clock stands still: no retry, however often the scheduler ticks
    assert len(reveal_posts(fake_slack)) == 1

    # Step the clock 5 s at a time and note when each retry happens.
    attempts_at = [first_try]
    moment = first_try
    while len(attempts_at) < 3 and moment < first_try + timedelta(minutes=3):
        moment += timedelta(seconds=5)
        clock.set(moment)
        wait_ticks(clock, 9)
        if len(reveal_posts(fake_slack)) > len(attempts_at):
            attempts_at.append(moment)
            assert len(reveal_posts(fake_slack)) == len(attempts_at), "several attempts at once"
            assert eventually(lambda: released(running) or only_drill(running).status == DrillStatus.CLOSED, 5)
    assert len(attempts_at) == 3, f"only {len(attempts_at)} reveal attempts in 3 minutes"

    assert eventually(lambda: only_drill(running).status == DrillStatus.CLOSED, 5), only_drill(running)
    wait_ticks(clock)

    gaps = [(b - a).total_seconds() for a, b in zip(attempts_at, attempts_at[1:], strict=False)]
    assert gaps[0] >= 5 and gaps[1] > gaps[0], f"no growing backoff: retries {gaps} s apart"
    calls = reveal_posts(fake_slack)
    assert [c.status for c in calls] == [500, 500, 200]
    assert calls[1].at - calls[0].at > 0.5  # not a burst inside the Slack client
    assert len(in_thread(fake_slack)) == 1, "the reveal was posted more than once"
    assert len(top_level(fake_slack)) == 1
    assert fake_slack.calls_to("conversations.replies"), "the retries did not look in the thread first"
    drill = only_drill(running)
    assert drill.reveal_ts == in_thread(fake_slack)[0]["ts"]
    assert drill.claimed_by is None


@sqlite_only
def test_reveal_retry_delay_starts_at_five_seconds_like_any_step(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    """A step released after an uncertain failure is retried after 5 s, 10 s, 20 s ... (bot.domain.claims);
    the reveal is a step of its own, so its backoff does not continue the posting step's."""
    running, clock, first_try = post_and_fail_the_reveal(start_bot, fake_slack, failures=2)

    assert_not_retried_yet(clock, lambda: reveal_posts(fake_slack), 1, first_try + timedelta(seconds=4.5))
    clock.set(first_try + timedelta(seconds=5))
    assert eventually(lambda: len(reveal_posts(fake_slack)) >= 2, 3), (
        f"the reveal was not retried 5 s after its first failure (drill attempts={only_drill(running).attempts}: "
        "the counter still includes the posting attempt, so the reveal's backoff starts at 10 s)"
    )
    assert eventually(lambda: released(running), 5)
    assert_not_retried_yet(clock, lambda: reveal_posts(fake_slack), 2, first_try + timedelta(seconds=14.5))
    assert_retried_at(clock, lambda: reveal_posts(fake_slack), 3, first_try + timedelta(seconds=15))
    assert eventually(lambda: only_drill(running).status == DrillStatus.CLOSED, 5), only_drill(running)
    assert len(in_thread(fake_slack)) == 1


# -- errors only a configuration change can fix ----------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    ("error", "fix"),
    [
        ("invalid_auth", "SLACK_BOT_TOKEN"),
        ("not_in_channel", "/invite"),
        ("channel_not_found", "channel ID"),
    ],
)
def test_setup_error_fails_once_with_the_fix_and_posts_after_retry_failed(
    error: str, fix: str, start_bot: StartBot, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock(BEFORE_SLOT)
    running, _ = start_bot(clock=clock.now)
    fake_slack.fail_next("chat.postMessage", Failure(status=200, body={"ok": False, "error": error}))

    outcome = running.runtime.service.post_today()
    assert outcome.result == "failed", outcome
    assert error in outcome.detail and fix in outcome.detail, outcome.detail

    clock.set(TUESDAY)  # now the schedule is due as well: still no loop
    wait_ticks(clock, 15)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert fake_slack.messages[CHANNEL] == []
    assert fake_slack.calls_to("conversations.history") == []
    drill = only_drill(running)
    assert drill.status == DrillStatus.POST_FAILED
    assert drill.error is not None and error in drill.error

    logged = [r for r in caplog.records if error in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno >= logging.ERROR
    assert fix in logged[0].getMessage(), logged[0].getMessage()

    # The operator fixes the setup (nothing more is scripted to fail) and retries by hand.
    retried = running.runtime.service.post_today(retry_failed=True)
    assert retried.result == "posted", retried
    assert retried.drill_id == drill.id
    wait_ticks(clock)
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    assert len(fake_slack.messages[CHANNEL]) == 1
    drill = only_drill(running)
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == retried.ts == fake_slack.messages[CHANNEL][0]["ts"]
    assert drill.error is None
