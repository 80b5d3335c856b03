"""Slow work never delays an acknowledgement.

Slack gives an app 3 seconds to acknowledge a request and retries (or shows the user an error) after
that. The bot answers slash commands through response_url and posts drills and reveals through the Web
API; when those are slow (here: 5 s per call), and when there is more slow work than listener threads,
a new slash command and a thread reply must still be acknowledged within 3 s. Both backends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bot.drills import PostResult
from bot.runtime import LISTENER_THREADS
from storage import repo
from storage.models import DrillStatus
from tests.conftest import CHANNEL, SlackSender, reply_event

NEVER = "off"  # the scheduler never posts on its own here
SLOW = 5.0  # seconds every slow Slack call takes
ACK_BUDGET = 3.0  # Slack's limit for an acknowledgement
BUSY_COMMANDS = 24  # more than the listener threads

T = TypeVar("T")


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def assert_acked_fast(what: str, response: tuple[int, bytes], elapsed: float) -> None:
    status, body = response
    assert 200 <= status < 300, f"{what}: HTTP {status} {body[:200]!r}"
    assert elapsed < ACK_BUDGET, f"{what} acknowledged after {elapsed:.2f} s (limit {ACK_BUDGET} s)"


def test_command_and_event_acks_stay_fast_while_response_url_is_slow(start_bot, fake_slack, database_url):
    bot, slack = start_bot(drill_schedule=NEVER, drill_answer_window="1h")
    outcome = bot.runtime.service.post_today()
    assert outcome.result == PostResult.POSTED and outcome.ts is not None
    fake_slack.delays["response_url"] = SLOW

    # 24 commands at once: every listener thread is busy answering through the slow response_url.
    def busy(i: int) -> tuple[tuple[int, bytes], float]:
        sender = SlackSender(slack.base_url)
        start = time.monotonic()
        try:
            response = sender.command("", user_id=f"UBUSY{i:04d}", response_url=fake_slack.response_url(f"busy{i}"))
        except OSError as exc:  # e.g. no answer within the sender's 10 s
            response = (0, f"{exc.__class__.__name__}: {exc}".encode())
        return response, time.monotonic() - start

    with ThreadPoolExecutor(max_workers=BUSY_COMMANDS) as pool:
        busy_acks = list(pool.map(busy, range(BUSY_COMMANDS)))
    for i, (response, elapsed) in enumerate(busy_acks):
        assert_acked_fast(f"busy command {i}", response, elapsed)
    in_flight = fake_slack.wait_for(
        lambda: len(fake_slack.calls_to("response_url")) >= min(LISTENER_THREADS, BUSY_COMMANDS), timeout=5
    )
    assert in_flight
    started = fake_slack.calls_to("response_url")
    assert not any(c.finished for c in started), "the slow responses must still be in flight"

    # Now one more command and one thread reply, while all of that is in flight.
    command_ack, command_elapsed = timed(
        slack.command, "", user_id="ULATE0001", response_url=fake_slack.response_url("late")
    )
    reply_ts = f"{time.time():.6f}"
    event_ack, event_elapsed = timed(
        slack.event, reply_event(outcome.ts, user="UREPLY001", ts=reply_ts), event_id="EvLATE0001"
    )
    still_busy = [c for c in fake_slack.calls_to("response_url") if not c.finished]
    assert_acked_fast("slash command sent while listeners are busy", command_ack, command_elapsed)
    assert_acked_fast("thread reply sent while listeners are busy", event_ack, event_elapsed)
    assert len(still_busy) >= min(LISTENER_THREADS, BUSY_COMMANDS), "the slow work ended before the check"

    # The acknowledged reply is stored; every command, the late one too, gets its answer.
    with bot.runtime.db.transaction() as session:
        assert repo.answerer_count(session, outcome.drill_id) == 1
    fake_slack.delays["response_url"] = 0
    expected = BUSY_COMMANDS + 1

    def all_answered() -> bool:
        return len([c for c in fake_slack.calls_to("response_url") if c.finished]) >= expected

    fake_slack.wait_for(all_answered, timeout=SLOW * 3)
    answers = fake_slack.calls_to("response_url")
    assert len(answers) == expected, "each command answered exactly once"
    assert all(c.status == 200 and c.params.get("response_type") == "ephemeral" for c in answers)


def test_event_acks_stay_fast_while_a_post_and_a_reveal_are_slow(start_bot, fake_slack, database_url):
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    bot, slack = start_bot(drill_schedule=NEVER, drill_answer_window="1h", clock=clock)
    service = bot.runtime.service
    today = service.post_today()
    assert today.result == PostResult.POSTED and today.ts is not None

    # A day later: the scheduler reveals yesterday's drill and we post today's, both through a slow Slack.
    fake_slack.delays["chat.postMessage"] = SLOW
    offset[0] = timedelta(days=1)
    outcomes: list[Any] = []
    poster = threading.Thread(target=lambda: outcomes.append(service.post_today()), name="test-poster")
    poster.start()
    try:

        def both_in_flight() -> bool:
            calls = [c for c in fake_slack.calls_to("chat.postMessage") if not c.finished]
            return any(c.params.get("thread_ts") for c in calls) and any(not c.params.get("thread_ts") for c in calls)

        fake_slack.wait_for(both_in_flight, timeout=5)

        reply_ts = f"{time.time():.6f}"
        event_ack, event_elapsed = timed(
            slack.event, reply_event(today.ts, user="UREPLY002", ts=reply_ts), event_id="EvSLOWPOST1"
        )
        command_ack, command_elapsed = timed(
            slack.command, "", user_id="UASKER002", response_url=fake_slack.response_url("during-post")
        )
        in_flight = [c for c in fake_slack.calls_to("chat.postMessage") if not c.finished]
        assert_acked_fast("thread reply sent during a slow post and reveal", event_ack, event_elapsed)
        assert_acked_fast("slash command sent during a slow post and reveal", command_ack, command_elapsed)
        assert len(in_flight) == 2, "the post and the reveal were still in flight when the acks came back"
    finally:
        fake_slack.delays["chat.postMessage"] = 0
        poster.join(timeout=SLOW * 3)
    assert not poster.is_alive()

    # The slow work itself completed: tomorrow's drill posted once, by this call, yesterday's revealed, the
    # reply stored. (Once, the scheduler's post job had posted tomorrow's drill first: it decided on
    # yesterday, then took "today" from the clock the test had just moved. Fixed, see
    # test_lifecycle_regressions.py.)
    assert outcomes and outcomes[0].result == PostResult.POSTED, outcomes
    assert outcomes[0].ts is not None
    assert len(fake_slack.posts(thread=False, channel=CHANNEL)) == 2  # yesterday's drill and tomorrow's, once each

    def revealed() -> bool:
        with bot.runtime.db.transaction() as session:
            drill = repo.drill_by_ts(session, CHANNEL, str(today.ts))
            return drill is not None and drill.status == DrillStatus.CLOSED

    fake_slack.wait_for(revealed, timeout=SLOW * 2)
    with bot.runtime.db.transaction() as session:
        assert repo.answerer_count(session, today.drill_id) == 1
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("response_url") if c.finished], timeout=5)
