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
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

from bot import slack_api
from bot.runtime import build_runtime
from bot.scheduler import build_scheduler
from bot.settings import Settings
from storage.models import DrillStatus
from tests.fakes.slack import Call, Failure, FakeSlack
from tests.fakes.workspace import CHANNEL

TUESDAY = datetime(2023, 11, 14, 10, 0, 5, tzinfo=UTC)  # a weekday, 5 s after the 10:00 slot
BEFORE_SLOT = TUESDAY.replace(hour=9, minute=59, second=0)  # same day, the schedule is not due yet

# Every test here runs on SQLite; the backoff tests, whose claims and release times are where the two
# backends differ, also on PostgreSQL. The others exercise the Slack client and the service's decisions,
# which do not depend on the backend (and their PostgreSQL paths are covered in test_posting_e2e), and
# some wait out real retry delays of the Slack client: running them twice would only cost time.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# -- helpers -----------------------------------------------------------------------------------------


def released(db: Any, bot: Any) -> bool:
    """The step in flight was given up (its claim released) after a failure."""
    drill = db.one_drill(bot)
    return drill.claimed_by is None and drill.status in (DrillStatus.POSTING, DrillStatus.REVEALING)


def closed_port() -> int:
    """A loopback port nothing listens on (bound once to get it, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def retries(eventually: Callable[..., Any], wait_ticks: Callable[..., None]) -> Any:
    """Moves the frozen clock to a moment and checks how many attempts Slack has seen by then."""

    class Retries:
        def not_yet(self, bot: Any, clock: Any, calls: Callable[[], list[Call]], count: int, moment: datetime) -> None:
            clock.set(moment)
            wait_ticks(bot)
            assert len(calls()) == count, f"retried too early, at {moment.time()} ({len(calls())} attempts)"

        def at(self, clock: Any, calls: Callable[[], list[Call]], count: int, moment: datetime) -> None:
            clock.set(moment)
            eventually(lambda: len(calls()) >= count, 5, what=f"a retry at {moment.time()} (attempt {count})")
            assert len(calls()) == count, [c.status for c in calls()]

    return Retries()


# -- 5xx while posting ---------------------------------------------------------------------------


def test_post_5xx_is_retried_with_growing_backoff_until_it_succeeds(
    start_bot, fake_slack, make_clock, wait_ticks, eventually, retries, db
) -> None:
    fake_slack.fail_next("chat.postMessage", Failure(status=500), Failure(status=500), Failure(status=500))
    clock = make_clock(TUESDAY)
    running, _ = start_bot(clock=clock)  # the schedule is due: the scheduler posts on its own

    eventually(lambda: len(fake_slack.post_attempts(thread=False)) == 1, 5, what="the scheduler to try to post")
    eventually(lambda: released(db, running), 5, what="the failed attempt to be released")
    assert db.one_drill(running).claimed_at == TUESDAY

    # Attempts 5 s, 10 s and 20 s apart in the (frozen, injected) clock: never earlier.
    released_at = TUESDAY
    for attempt, delay in ((2, 5), (3, 10), (4, 20)):
        attempts = lambda: fake_slack.post_attempts(thread=False)  # noqa: E731
        retries.not_yet(running, clock, attempts, attempt - 1, released_at + timedelta(seconds=delay - 0.5))
        retry_at = released_at + timedelta(seconds=delay)
        retries.at(clock, attempts, attempt, retry_at)
        if attempt < 4:
            eventually(lambda: released(db, running), 5, what=f"attempt {attempt} to be released")
        released_at = retry_at

    drill = eventually(lambda: next((d for d in db.drills(running) if d.status == DrillStatus.OPEN), None), 5)
    wait_ticks(running)

    calls = fake_slack.post_attempts(thread=False)
    assert [c.status for c in calls] == [500, 500, 500, 200]
    # Not a burst inside the Slack client: with the clock frozen 4.5 s after the failure, the scheduler
    # ticked and Slack still had one attempt (`retries.not_yet` above); each retry came once the clock moved.
    # Every retry first looked in Slack for a copy the failed attempt might have posted.
    assert len(fake_slack.calls_to("conversations.history")) == 3
    assert len(fake_slack.top_level()) == 1
    assert drill.ts == fake_slack.top_level()[0]["ts"]
    assert drill.claimed_by is None


# -- a timeout while posting ---------------------------------------------------------------------


@sqlite_only
def test_post_timeout_is_uncertain_and_the_retry_adopts_the_message(
    start_bot, fake_slack, monkeypatch: pytest.MonkeyPatch, make_clock, wait_ticks, eventually, db
) -> None:
    monkeypatch.setattr(slack_api, "HTTP_TIMEOUT_SECONDS", 1)
    clock = make_clock(BEFORE_SLOT)  # the schedule is not due: only the explicit post runs
    running, _ = start_bot(clock=clock)
    # Slack stores the message at once but answers after 2 s: past the client's 1 s timeout.
    fake_slack.fail_next("chat.postMessage", Failure(act=True, delay=2, status=200))

    started = time.monotonic()
    outcome = running.runtime.service.post_today()
    assert outcome.result == "retrying", outcome
    assert time.monotonic() - started < 1.9, "the client waited for the late answer instead of timing out"
    assert len(fake_slack.messages[CHANNEL]) == 1  # Slack did post it
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # the timeout was not retried blindly
    assert db.one_drill(running).status == DrillStatus.POSTING

    wait_ticks(running)  # within the retry delay nothing happens
    assert len(fake_slack.calls_to("chat.postMessage")) == 1

    clock.advance(seconds=5)
    eventually(lambda: db.one_drill(running).status == DrillStatus.OPEN, 5, what="the message adopted")
    wait_ticks(running)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1, "posted twice"
    assert len(fake_slack.messages[CHANNEL]) == 1
    assert fake_slack.calls_to("conversations.history")
    drill = db.one_drill(running)
    assert drill.id == outcome.drill_id
    assert drill.ts == fake_slack.messages[CHANNEL][0]["ts"]


# -- Slack unreachable -----------------------------------------------------------------------------


@sqlite_only
def test_connection_refused_is_retried_once_slack_is_reachable(
    make_settings: Callable[..., Settings], fake_slack: FakeSlack, make_clock, wait_ticks, eventually, db, monkeypatch
) -> None:
    # The client retries a refused connection a few times with growing pauses before it gives up; the
    # pauses are skipped here (not the retries): what matters is what the drill loop does afterwards.
    monkeypatch.setattr(BackoffRetryIntervalCalculator, "calculate_sleep_duration", lambda self, attempt: 0.0)
    port = closed_port()
    settings = make_settings(slack_api_url=f"http://127.0.0.1:{port}/api/")
    clock = make_clock(BEFORE_SLOT)
    # Not start_bot: a Bot checks the token with auth.test when it starts, which cannot succeed here.
    # The runtime plus the bot's own scheduler is what keeps retrying in `drillbot run`.
    runtime = build_runtime(settings, clock=clock)
    scheduler = build_scheduler(runtime.service, tick_seconds=settings.drill_tick_seconds)
    late: FakeSlack | None = None
    scheduler.start()
    try:
        outcome = runtime.service.post_today()
        assert outcome.result == "retrying", outcome
        assert "cannot reach Slack" in outcome.detail, outcome.detail
        drill = db.one_drill(runtime)
        assert drill.status == DrillStatus.POSTING and drill.claimed_by is None

        late = FakeSlack(port=port).start()
        wait_ticks(scheduler)
        assert late.calls_to("chat.postMessage") == [], "retried before the retry delay"

        clock.advance(seconds=5)
        eventually(lambda: db.one_drill(runtime).status == DrillStatus.OPEN, 5, what="the drill posted")
        wait_ticks(scheduler)

        assert len(late.calls_to("chat.postMessage")) == 1
        assert len(late.messages[CHANNEL]) == 1
        assert db.one_drill(runtime).ts == late.messages[CHANNEL][0]["ts"]
        assert fake_slack.calls == []  # everything went to SLACK_API_URL
    finally:
        scheduler.shutdown(wait=True)
        runtime.service.close()
        runtime.db.dispose()
        if late is not None:
            late.stop()


# -- rate limits -----------------------------------------------------------------------------------


@sqlite_only
@pytest.mark.slow  # waits out three real Retry-After: 1
def test_three_rate_limits_in_a_row_are_waited_out_and_the_drill_posted_once(
    start_bot, fake_slack, make_clock, wait_ticks, db
) -> None:
    limited = Failure(status=429, headers={"Retry-After": "1"})
    clock = make_clock(BEFORE_SLOT)
    running, _ = start_bot(clock=clock)
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
    wait_ticks(running)
    assert len(fake_slack.calls_to("chat.postMessage")) == 4
    assert len(fake_slack.messages[CHANNEL]) == 1
    drill = db.one_drill(running)
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == outcome.ts == fake_slack.messages[CHANNEL][0]["ts"]


# -- 5xx while revealing ---------------------------------------------------------------------------


@pytest.fixture
def failed_reveal(start_bot: Any, fake_slack: FakeSlack, make_clock: Any, eventually: Any, db: Any) -> Any:
    """`failed_reveal(failures)`: a posted drill whose reveal, at the deadline, gets `failures` 500s; returns
    (bot, clock, first try) once the first attempt was released."""

    def make(failures: int) -> tuple[Any, Any, datetime]:
        clock = make_clock(TUESDAY)
        running, _ = start_bot(clock=clock)
        eventually(lambda: [d for d in db.drills(running) if d.status == DrillStatus.OPEN], 5, what="the drill posted")
        fake_slack.fail_next("chat.postMessage", *[Failure(status=500) for _ in range(failures)])

        first_try = db.one_drill(running).deadline + timedelta(seconds=1)
        clock.set(first_try)
        eventually(lambda: fake_slack.post_attempts(thread=True), 5, what="a reveal attempt after the deadline")
        eventually(lambda: released(db, running), 5, what="the failed reveal to be released")
        assert db.one_drill(running).status == DrillStatus.REVEALING
        return running, clock, first_try

    return make


def test_reveal_5xx_is_retried_with_backoff_and_posted_once(failed_reveal, fake_slack, wait_ticks, eventually, db):
    running, clock, first_try = failed_reveal(failures=2)

    wait_ticks(running)  # the clock stands still: no retry, however often the scheduler ticks
    assert len(fake_slack.post_attempts(thread=True)) == 1

    # Step the clock 5 s at a time and note when each retry happens.
    attempts_at = [first_try]
    moment = first_try
    while len(attempts_at) < 3 and moment < first_try + timedelta(minutes=3):
        moment += timedelta(seconds=5)
        clock.set(moment)
        wait_ticks(running)
        if len(fake_slack.post_attempts(thread=True)) > len(attempts_at):
            attempts_at.append(moment)
            assert len(fake_slack.post_attempts(thread=True)) == len(attempts_at), "several attempts at once"
            eventually(lambda: released(db, running) or db.one_drill(running).status == DrillStatus.CLOSED, 5)
    assert len(attempts_at) == 3, f"only {len(attempts_at)} reveal attempts in 3 minutes"

    eventually(lambda: db.one_drill(running).status == DrillStatus.CLOSED, 5, what="the drill closed")
    wait_ticks(running)

    gaps = [(b - a).total_seconds() for a, b in zip(attempts_at, attempts_at[1:], strict=False)]
    assert gaps[0] >= 5 and gaps[1] > gaps[0], f"no growing backoff: retries {gaps} s apart"
    calls = fake_slack.post_attempts(thread=True)
    assert [c.status for c in calls] == [500, 500, 200]
    # Not a burst inside the Slack client: one attempt while the clock stood still (checked above).
    assert len(fake_slack.thread_replies()) == 1, "the reveal was posted more than once"
    assert len(fake_slack.top_level()) == 1
    assert fake_slack.calls_to("conversations.replies"), "the retries did not look in the thread first"
    drill = db.one_drill(running)
    assert drill.reveal_ts == fake_slack.thread_replies()[0]["ts"]
    assert drill.claimed_by is None


@sqlite_only
def test_reveal_retry_delay_starts_at_five_seconds_like_any_step(failed_reveal, fake_slack, eventually, retries, db):
    """A step released after an uncertain failure is retried after 5 s, 10 s, 20 s ... (bot.domain.claims);
    the reveal is a step of its own, so its backoff does not continue the posting step's."""
    running, clock, first_try = failed_reveal(failures=2)
    attempts = lambda: fake_slack.post_attempts(thread=True)  # noqa: E731

    retries.not_yet(running, clock, attempts, 1, first_try + timedelta(seconds=4.5))
    clock.set(first_try + timedelta(seconds=5))
    eventually(
        lambda: len(attempts()) >= 2,
        3,
        what="a retry 5 s after the reveal's first failure (if the attempt counter still includes the posting "
        "attempt, the reveal's backoff starts at 10 s)",
    )
    eventually(lambda: released(db, running), 5, what="the second attempt to be released")
    retries.not_yet(running, clock, attempts, 2, first_try + timedelta(seconds=14.5))
    retries.at(clock, attempts, 3, first_try + timedelta(seconds=15))
    eventually(lambda: db.one_drill(running).status == DrillStatus.CLOSED, 5, what="the drill closed")
    assert len(fake_slack.thread_replies()) == 1


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
    error: str, fix: str, start_bot, fake_slack, caplog: pytest.LogCaptureFixture, make_clock, wait_ticks, db
) -> None:
    caplog.set_level(logging.INFO)
    clock = make_clock(BEFORE_SLOT)
    running, _ = start_bot(clock=clock)
    fake_slack.fail_next("chat.postMessage", Failure(status=200, body={"ok": False, "error": error}))

    outcome = running.runtime.service.post_today()
    assert outcome.result == "failed", outcome
    assert error in outcome.detail and fix in outcome.detail, outcome.detail

    clock.set(TUESDAY)  # now the schedule is due as well: still no loop
    wait_ticks(running, runs=3)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert fake_slack.messages[CHANNEL] == []
    assert fake_slack.calls_to("conversations.history") == []
    drill = db.one_drill(running)
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
    wait_ticks(running)
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    assert len(fake_slack.messages[CHANNEL]) == 1
    drill = db.one_drill(running)
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == retried.ts == fake_slack.messages[CHANNEL][0]["ts"]
    assert drill.error is None
