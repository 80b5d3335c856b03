"""Regressions for the lifecycle holes of issue 11, each seen failing on the code before the redesign.

The drill loop runs against the fake Slack over HTTP (through the real slack-sdk gateway), on SQLite and
PostgreSQL, with a clock the test moves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain.questions import load_bank
from bot.drills import DrillService
from bot.slack_api import SlackGateway, make_client
from storage.db import Database
from storage.models import Answer, Drill, StreakState
from tests.fakes.slack import Failure, FakeSlack
from tests.fakes.workspace import BOT_TOKEN, CHANNEL, TEST_BANK

# A weekday at the 10:00 slot, on the day the fake Slack's message timestamps fall (1_700_000_000 and on).
MONDAY_10 = datetime(2023, 11, 14, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock(make_clock: Any) -> Any:
    return make_clock(MONDAY_10)


@pytest.fixture
def build(fake_slack: FakeSlack, make_settings: Any, clock: Any) -> Iterator[Any]:
    """`build(**settings)`: the drill loop of one process (a new owner each call) on the test's database."""
    made: list[Database] = []

    def factory(**overrides: Any) -> DrillService:
        settings = make_settings(**{"drill_answer_window": "1h", **overrides})
        db = Database(settings.database_url)
        made.append(db)
        slack = SlackGateway(make_client(token=BOT_TOKEN, base_url=fake_slack.url))
        return DrillService(settings=settings, bank=load_bank(str(TEST_BANK)), db=db, slack=slack, clock=clock)

    yield factory
    for db in made:
        db.dispose()


def _drill(service: DrillService) -> Drill:
    with service.db.transaction() as session:
        return session.query(Drill).one()


def _top_level(fake: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in fake.messages[CHANNEL] if not m.get("thread_ts") or m.get("thread_ts") == m.get("ts")]


def _replies(fake: FakeSlack, thread: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages[CHANNEL] if m.get("thread_ts") == thread and m.get("ts") != thread]


@pytest.mark.parametrize("error", ["is_archived", "not_in_channel", "channel_not_found"])
def test_a_refused_reveal_is_retried_and_post_never_posts_that_drill_again(
    error: str, build: Any, fake_slack: FakeSlack, clock: Any
) -> None:
    service = build()
    posted = service.post_today()
    assert posted.result == "posted"
    clock.advance(hours=1, minutes=1)
    fake_slack.fail_next("chat.postMessage", Failure(status=200, body={"ok": False, "error": error}))
    assert service.reveal_due() == []

    # The operator fixes the channel and runs `drillbot post` the same day, as the README suggests.
    again = service.post_today(retry_failed=True)
    assert again.result == "exists", again
    assert len(_top_level(fake_slack)) == 1, "the same drill was posted a second time"

    # The guidance is still owed: `drillbot reveal --due` posts it, once.
    assert service.reveal_due(retry_failed=True) == [posted.drill_id]
    assert len(_replies(fake_slack, str(posted.ts))) == 1
    assert _drill(service).status == "closed"


def test_the_running_bot_retries_a_refused_reveal_on_its_own(build: Any, fake_slack: FakeSlack, clock: Any) -> None:
    service = build()
    posted = service.post_today()
    clock.advance(hours=1, minutes=1)
    fake_slack.fail_next("chat.postMessage", Failure(status=200, body={"ok": False, "error": "is_archived"}))
    assert service.reveal_due() == []
    assert service.reveal_due() == []  # not at once: a refusal waits its retry delay
    clock.advance(minutes=6)
    assert service.reveal_due() == [posted.drill_id]
    assert len(_replies(fake_slack, str(posted.ts))) == 1


def test_sealed_answers_are_posted_when_a_restart_adopts_the_reveal(
    build: Any, fake_slack: FakeSlack, clock: Any
) -> None:
    service = build(drill_sealed=True)
    posted = service.post_today()
    assert posted.drill_id is not None
    assert service.submit_sealed_answer(posted.drill_id, "UANNA", "my sealed answer") in (None, "stored")
    clock.advance(hours=1, minutes=1)
    # The reveal lands in Slack but the reply is lost (500 after acting): the process then dies.
    fake_slack.fail_next("chat.postMessage", Failure(status=500, act=True))
    assert service.reveal_due() == []
    restarted = build(drill_sealed=True)
    clock.advance(minutes=11)  # past the old claim's lease and retry delay
    assert restarted.reveal_due() == [posted.drill_id]
    replies = _replies(fake_slack, str(posted.ts))
    assert sum("Sealed answers" in str(m.get("text")) for m in replies) == 1, "sealed answers never posted"
    assert sum("Guidance" in str(m.get("text")) for m in replies) == 1


def test_after_two_uncertain_posts_the_deadline_shown_is_the_deadline_enforced(
    build: Any, fake_slack: FakeSlack, clock: Any
) -> None:
    service = build()
    # 1st attempt: Slack never saw it (500). 2nd attempt (a fresh deadline): posted, but the reply is lost.
    fake_slack.fail_next("chat.postMessage", Failure(status=500), Failure(status=500, act=True))
    assert service.post_today().result == "retrying"
    clock.advance(minutes=1)
    assert service.post_today().result == "retrying"
    shown_at = clock()
    clock.advance(minutes=11)
    adopted = service.post_today()
    assert adopted.result in ("adopted", "posted")
    assert len(_top_level(fake_slack)) == 1
    drill = _drill(service)
    # The message shows the second attempt's deadline (its window started when it was posted).
    assert abs((drill.deadline - (shown_at + timedelta(hours=1))).total_seconds()) < 2, drill.deadline


def test_a_delete_after_the_fold_updates_the_stored_streaks(build: Any, fake_slack: FakeSlack, clock: Any) -> None:
    service = build()
    posted = service.post_today()
    reply_ts = f"{clock().timestamp() + 60:.6f}"
    event = {"type": "message", "channel": CHANNEL, "user": "UANNA", "text": "answer", "thread_ts": posted.ts,
             "ts": reply_ts}
    assert service.handle_message_event(event, "UBOT") == "answer recorded"
    clock.advance(minutes=30)
    # Deleted before the deadline (withdrawn), but Slack delivers the delete only after the fold.
    deleted = {"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "deleted_ts": reply_ts,
               "event_ts": f"{clock().timestamp():.6f}"}
    clock.advance(hours=1)
    assert service.reveal_due() == [posted.drill_id]
    assert service.fold_streaks(CHANNEL) == 0  # folded already, with the answer
    assert service.handle_message_event(deleted, "UBOT") == "answer withdrawn"
    assert {s.user_id: s.total for s in service.leaderboard(CHANNEL)} == {}
    with service.db.transaction() as session:
        assert [(s.user_id, s.total) for s in session.query(StreakState)] == []


def test_a_lost_claim_is_noticed_and_nothing_more_is_done(build: Any, fake_slack: FakeSlack, clock: Any) -> None:
    service = build()
    posted = service.post_today()
    clock.advance(hours=1, minutes=1)
    other = build()
    # While this process waits on a slow reveal (past its lease), another takes the step over and finishes.
    fake_slack.fail_next("chat.postMessage", Failure(status=200, delay=1.0, act=True))
    done = threading.Event()
    result: list[Any] = []

    def slow() -> None:
        result.append(service.reveal_due())
        done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    fake_slack.wait_for(lambda: fake_slack.calls_to("chat.postMessage")[1:])
    clock.advance(minutes=11)
    assert other.reveal_due() == [posted.drill_id]  # adopts the message the slow one posted
    thread.join(10)
    assert result == [[]], "the step that lost its claim reported success"
    assert len(_replies(fake_slack, str(posted.ts))) == 1


def test_replicas_sharing_hostname_and_pid_trust_each_others_live_claims(
    build: Any, fake_slack: FakeSlack, clock: Any
) -> None:
    from bot.domain.claims import Owner

    first = build()
    fake_slack.fail_next("chat.postMessage", Failure(status=200, delay=1.5, act=True))
    thread = threading.Thread(target=first.post_today)
    thread.start()
    fake_slack.wait_for(lambda: fake_slack.calls_to("chat.postMessage"))
    second = build()
    second.loop.owner = Owner(first.owner.host, first.owner.pid)  # same host and PID 1, another process
    assert second.post_today().result == "in_progress"
    thread.join(10)
    assert len(_top_level(fake_slack)) == 1


def test_a_nested_transaction_fails_at_once(build: Any) -> None:
    service = build()
    with service.db.transaction(), pytest.raises(RuntimeError, match="never nest"):  # noqa: SIM117
        with service.db.transaction():
            pass


def test_answers_to_a_drill_are_stored_once_and_the_fold_sees_them(build: Any, clock: Any) -> None:
    service = build()
    posted = service.post_today()
    for n, user in enumerate(["UA", "UB"]):
        event = {"type": "message", "channel": CHANNEL, "user": user, "text": "x", "thread_ts": posted.ts,
                 "ts": f"{clock().timestamp() + n + 1:.6f}"}
        service.handle_message_event(event, "UBOT")
        service.handle_message_event(event, "UBOT")
    with service.db.transaction() as session:
        assert session.query(Answer).count() == 2


def test_the_post_job_never_posts_a_day_it_did_not_decide_on(
    build: Any, fake_slack: FakeSlack, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's post job decides on a day (here: that day's drill is still being posted) and then
    posts. If midnight passes in between, it must not post the next day's drill: that day may not be
    scheduled at all (here the schedule is off). Found through a flaky `test_ack_latency.py` run."""
    other = build(drill_schedule="off")
    fake_slack.fail_next("chat.postMessage", Failure(status=500))
    assert other.post_today().result == "retrying"  # Monday's drill: still being posted
    clock.set(MONDAY_10.replace(hour=23, minute=59, second=59))  # past its retry delay
    service = build(drill_schedule="off")
    decided = service.posting.post_today

    def late(*args: Any, **kwargs: Any) -> Any:
        clock.advance(seconds=2)  # midnight passes between the decision and the post
        return decided(*args, **kwargs)

    monkeypatch.setattr(service.posting, "post_today", late)
    service.post_if_due()

    with service.db.transaction() as session:
        days = sorted(drill.day for drill in session.query(Drill))
    assert days == [MONDAY_10.date()], f"a drill for a day nobody decided on: {days}"
    assert len(_top_level(fake_slack)) == 1  # Monday's pending drill, finished once
