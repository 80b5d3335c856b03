"""End-to-end: posting and revealing drills with the real bot in-process and a fake Slack over HTTP.

Time is injected (`start_bot(clock=...)`) wherever the schedule or a deadline matters; moving the clock
wakes the bot's scheduler, and `wait_ticks(bot)` waits until every scheduler job has run twice more
(counted from the scheduler's own job events), which is how these tests know nothing else happened without
sleeping a guessed while.

Note on dates: the fake Slack numbers messages from ts 1_700_000_000 (2023-11-14 22:13 UTC) upwards, and
adoption looks for messages from the start of the drill's day, so the injected days here are in
November 2023, on or before the 14th where adoption is involved.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain.questions import Question, load_bank
from bot.runtime import Bot, build_runtime
from bot.settings import Settings
from storage import repo
from storage.models import DrillStatus
from tests.fakes.events import reply_event
from tests.fakes.slack import Failure, FakeSlack
from tests.fakes.workspace import CHANNEL, TEST_BANK

TUESDAY = datetime(2023, 11, 14, 10, 0, 5, tzinfo=UTC)  # a weekday, 5 s after the 10:00 slot
SATURDAY = datetime(2023, 11, 18, 10, 0, 5, tzinfo=UTC)
MONDAY = datetime(2023, 11, 20, 10, 0, 5, tzinfo=UTC)
BEFORE_SLOT = TUESDAY.replace(hour=9, minute=59, second=0)  # same weekday, schedule not yet due
BANK = load_bank(str(TEST_BANK))


def texts(value: Any) -> str:
    """Every `text` string inside a Block Kit structure, joined with newlines."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "text" and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return "\n".join(found)


def question_of(db: Any, bot: Bot, drill_id: int) -> Question:
    question = BANK.get(db.drill(bot, drill_id).question_id)
    assert question is not None
    return question


StartBot = Callable[..., tuple[Bot, Any]]


# -- scheduled posting -------------------------------------------------------------------------------


def test_scheduler_posts_one_drill_on_a_weekday_slot(start_bot, fake_slack, make_clock, wait_ticks, db) -> None:
    bot, _ = start_bot(clock=make_clock(TUESDAY))

    fake_slack.wait_for(lambda: fake_slack.posts(thread=False))
    wait_ticks(bot)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert len(fake_slack.messages[CHANNEL]) == 1
    drill = db.one_drill(bot)
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == fake_slack.messages[CHANNEL][0]["ts"]
    assert drill.day == TUESDAY.date()
    assert drill.deadline == TUESDAY + timedelta(hours=6)  # default answer window


def test_scheduler_posts_nothing_on_saturday(start_bot, fake_slack, make_clock, wait_ticks, db) -> None:
    clock = make_clock(SATURDAY)
    bot, _ = start_bot(clock=clock)

    wait_ticks(bot)
    assert fake_slack.calls_to("chat.postMessage") == []
    assert db.drills(bot) == []

    # The same running scheduler does post once the clock reaches a weekday slot.
    clock.set(MONDAY)
    fake_slack.wait_for(lambda: fake_slack.posts(thread=False))
    assert db.one_drill(bot).day == MONDAY.date()


def test_no_schedule_posts_nothing_even_at_midnight_on_new_year(start_bot, fake_slack, make_clock, wait_ticks, db):
    """DRILL_SCHEDULE=off: never a scheduled drill (the old stand-in, `0 0 1 1 *`, fired right here)."""
    new_year = datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC)
    bot, _ = start_bot(clock=make_clock(new_year), drill_schedule="off", drill_answer_window="1d")
    wait_ticks(bot)
    assert fake_slack.calls_to("chat.postMessage") == []
    assert db.drills(bot) == []
    assert bot.runtime.service.post_today().result == "posted", "`drillbot post` still posts"


def test_drill_message_content(start_bot, fake_slack, make_clock, db) -> None:
    bot, _ = start_bot(clock=make_clock(TUESDAY))
    post = fake_slack.wait_for(lambda: fake_slack.posts(thread=False))[0]
    params = post.params
    drill = db.one_drill(bot)
    question = question_of(db, bot, drill.id)
    text, blocks = params["text"], texts(params["blocks"])

    assert params["channel"] == CHANNEL
    assert "thread_ts" not in params
    for part in (question.title, question.category, str(question.difficulty)):
        assert part in text, (part, text)
        assert part in blocks, (part, blocks)
    for where in (text, blocks):
        assert re.search(r"reply in (the|this) thread", where, re.IGNORECASE), where

    deadline = TUESDAY + timedelta(hours=6)
    assert f"<!date^{int(deadline.timestamp())}^" in blocks, blocks
    # The fallback text names the deadline too (Slack date formatting or its UTC rendering).
    assert f"<!date^{int(deadline.timestamp())}^" in text or deadline.strftime("%H:%M UTC") in text, text

    assert params["metadata"]["event_type"] == "drillbot_drill"
    assert fake_slack.drill_id_of(params) == drill.id


def test_at_most_one_drill_per_channel_per_day_even_across_a_restart(
    start_bot, make_settings: Callable[..., Settings], fake_slack: FakeSlack, make_clock, wait_ticks, db
) -> None:
    settings = make_settings()
    clock = make_clock(TUESDAY)
    bot, _ = start_bot(settings=settings, clock=clock)
    fake_slack.wait_for(lambda: fake_slack.posts(thread=False))
    ts = fake_slack.messages[CHANNEL][0]["ts"]
    db.wait_recorded(bot, CHANNEL, ts)  # Slack has the message a moment before the bot records it

    again = bot.runtime.service.post_today()
    assert again.result == "exists"
    assert again.ts == ts
    assert len(fake_slack.calls_to("chat.postMessage")) == 1

    bot.stop(deadline_seconds=5)
    clock.advance(minutes=1)
    restarted, _ = start_bot(settings=settings, clock=clock)
    wait_ticks(restarted)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert restarted.runtime.service.post_today().result == "exists"
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert db.one_drill(restarted).ts == ts
    restarted.stop(deadline_seconds=5)  # now, so the fixture's second stop of `bot` has no threads to wait on


def test_rotation_uses_every_question_before_starting_over(start_bot, fake_slack, make_clock, db) -> None:
    days = [TUESDAY + timedelta(days=n) for n in (0, 1, 2, 3)] + [MONDAY, MONDAY + timedelta(days=1)]
    clock = make_clock(days[0])
    bot, _ = start_bot(clock=clock)

    picked: list[str] = []
    for n, day in enumerate(days, start=1):
        clock.set(day)
        fake_slack.wait_for(lambda n=n: len(fake_slack.posts(thread=False)) >= n)
        posts = fake_slack.posts(thread=False)
        assert len(posts) == n
        picked.append(question_of(db, bot, fake_slack.drill_id_of(posts[-1].params)).id)

    assert len(BANK.ids) == 3
    assert sorted(picked[:3]) == sorted(BANK.ids), picked  # three days, three different questions
    assert picked[3] in BANK.ids  # day 4 starts a new cycle
    assert sorted(picked[3:]) == sorted(BANK.ids), picked  # and that cycle again uses each once


# -- Slack failures while posting ------------------------------------------------------------------


def test_rate_limited_post_is_retried_after_retry_after(start_bot, fake_slack, make_clock, wait_ticks, db) -> None:
    fake_slack.fail_next("chat.postMessage", Failure(status=429, headers={"Retry-After": "1"}))
    bot, _ = start_bot(clock=make_clock(TUESDAY))

    fake_slack.wait_for(lambda: fake_slack.posts(thread=False))
    wait_ticks(bot)

    calls = fake_slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.95, calls[1].at - calls[0].at
    assert len(fake_slack.messages[CHANNEL]) == 1
    drill = db.one_drill(bot)
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == fake_slack.messages[CHANNEL][0]["ts"]


def test_uncertain_failure_is_adopted_through_metadata(start_bot, fake_slack, make_clock, wait_ticks, db) -> None:
    clock = make_clock(BEFORE_SLOT)  # the schedule is not due: only the explicit post runs
    bot, _ = start_bot(clock=clock)
    fake_slack.fail_next("chat.postMessage", Failure(status=500, act=True))

    outcome = bot.runtime.service.post_today()
    assert outcome.result == "retrying"
    assert len(fake_slack.messages[CHANNEL]) == 1  # Slack did store it
    assert db.one_drill(bot).status == DrillStatus.POSTING

    # Within the retry delay nothing is tried again.
    wait_ticks(bot)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert fake_slack.calls_to("conversations.history") == []

    clock.advance(seconds=6)  # past the first retry delay (5 s)
    fake_slack.wait_for(lambda: db.one_drill(bot).status == DrillStatus.OPEN)
    wait_ticks(bot)

    assert len(fake_slack.messages[CHANNEL]) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # adopted, not posted again
    history = fake_slack.calls_to("conversations.history")
    assert history and str(history[0].params.get("include_all_metadata")).lower() in ("1", "true")
    drill = db.one_drill(bot)
    assert drill.ts == fake_slack.messages[CHANNEL][0]["ts"]
    assert drill.id == outcome.drill_id


def test_invalid_auth_fails_once_and_is_not_retried_in_a_loop(
    start_bot, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture, make_clock, wait_ticks, db
) -> None:
    caplog.set_level(logging.INFO)
    clock = make_clock(BEFORE_SLOT)
    bot, _ = start_bot(clock=clock)
    fake_slack.fail_next("chat.postMessage", Failure(status=200, body={"ok": False, "error": "invalid_auth"}))

    outcome = bot.runtime.service.post_today()
    assert outcome.result == "failed"
    assert "invalid_auth" in outcome.detail

    clock.set(TUESDAY)  # now the schedule is due as well
    wait_ticks(bot, runs=3)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert fake_slack.messages[CHANNEL] == []
    assert db.one_drill(bot).status == DrillStatus.POST_FAILED
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "invalid_auth" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]


# -- revealing ---------------------------------------------------------------------------------------


def test_reveal_after_deadline_posts_guidance_and_closes_the_drill(
    start_bot, fake_slack, make_clock, wait_ticks, db
) -> None:
    clock = make_clock(datetime.now(UTC), running=True)
    bot, slack = start_bot(clock=clock, drill_schedule="off", drill_answer_window="1h")
    posted = bot.runtime.service.post_today()
    assert posted.result == "posted"
    drill_ts = str(posted.ts)
    deadline = db.one_drill(bot).deadline

    status, _ = slack.event(reply_event(drill_ts, user="UALICE"))
    assert status == 200
    drill_id = db.one_drill(bot).id
    with bot.runtime.db.transaction() as session:
        assert repo.answerer_count(session, drill_id) == 1

    wait_ticks(bot)
    assert fake_slack.posts(thread=True) == [], "revealed before the deadline"
    clock.set(deadline)  # the deadline is reached; the clock runs on from there
    reached = time.time()
    reveals = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=17)
    fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update"))
    wait_ticks(bot)

    reveals = fake_slack.posts(thread=True)
    assert len(reveals) == 1
    reveal = reveals[0]
    assert reveal.params["thread_ts"] == drill_ts
    assert reveal.at - reached <= 15, "revealed more than 15 s after the deadline"
    question = question_of(db, bot, posted.drill_id or 0)
    body = texts(reveal.params["blocks"])
    assert question.guidance in body
    for point in question.key_points:
        assert point in body, point
    assert question.guidance in reveal.params["text"]
    assert "1 answered" in body
    assert reveal.params["metadata"]["event_type"] == "drillbot_reveal"

    # The live count may have been refreshed before; the last update marks the drill closed.
    updates = fake_slack.calls_to("chat.update")
    assert 1 <= len(updates) <= 2
    assert updates[-1].params["ts"] == drill_ts and updates[-1].params["channel"] == CHANNEL
    closed = texts(updates[-1].params["blocks"]) + "\n" + updates[-1].params["text"]
    assert "closed" in closed.lower()
    assert "1 answered" in closed
    assert "reply in this thread" not in closed.lower()

    drill = db.one_drill(bot)
    assert drill.status == DrillStatus.CLOSED
    assert drill.answer_count == 1
    assert drill.reveal_ts == next(m["ts"] for m in fake_slack.messages[CHANNEL] if m.get("thread_ts"))


def test_drill_posted_by_another_runtime_is_revealed_by_the_running_bot(
    start_bot, make_settings: Callable[..., Settings], fake_slack: FakeSlack, make_clock, wait_ticks, db
) -> None:
    settings = make_settings(drill_schedule="off", drill_answer_window="1h")
    clock = make_clock(datetime.now(UTC), running=True)
    bot, _ = start_bot(settings=settings, clock=clock)

    other = build_runtime(settings, clock=clock)  # e.g. `drillbot post` in another process: no Bot, no scheduler
    try:
        posted = other.service.post_today()
    finally:
        other.service.close()
        other.db.dispose()
    assert posted.result == "posted"

    clock.advance(hours=1)  # past its deadline
    reveal = fake_slack.wait_for(lambda: fake_slack.posts(thread=True))[0]
    wait_ticks(bot)
    assert len(fake_slack.posts(thread=True)) == 1
    assert reveal.params["thread_ts"] == posted.ts
    assert len(fake_slack.posts(thread=False)) == 1
    assert db.one_drill(bot).status == DrillStatus.CLOSED


def test_drill_overdue_while_no_bot_ran_is_revealed_right_after_start(
    start_bot, make_settings: Callable[..., Settings], fake_slack: FakeSlack, make_clock, db
) -> None:
    settings = make_settings(drill_schedule="off", drill_answer_window="2s")
    offline = build_runtime(settings, clock=make_clock(datetime.now(UTC) - timedelta(minutes=5)))
    try:
        posted = offline.service.post_today()  # its deadline passed minutes ago, with no bot running
    finally:
        offline.service.close()
        offline.db.dispose()
    assert posted.result == "posted"
    assert fake_slack.posts(thread=True) == []

    started = time.time()
    bot, _ = start_bot(settings=settings)
    reveal = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=5)[0]
    assert reveal.at - started < 3
    assert reveal.params["thread_ts"] == posted.ts
    # The reveal is recorded just after Slack has it (the closed badge is updated first).
    fake_slack.wait_for(lambda: db.one_drill(bot).status == DrillStatus.CLOSED)


def test_two_bots_on_one_database_post_and_reveal_exactly_once(
    start_bot, make_settings: Callable[..., Settings], fake_slack: FakeSlack, make_clock, wait_ticks, db
) -> None:
    settings = make_settings()
    clocks = [make_clock(BEFORE_SLOT), make_clock(BEFORE_SLOT)]
    bots = [start_bot(settings=settings, clock=c)[0] for c in clocks]
    try:
        for b in bots:
            wait_ticks(b)  # both schedulers are ticking
        # Slack takes a moment to answer (0.3 s, well within its usual latency), so one bot's tick
        # overlaps the other bot's call in flight: the case the claims exist for.
        fake_slack.delays["chat.postMessage"] = 0.3

        for c in clocks:
            c.set(TUESDAY)
        fake_slack.wait_for(lambda: fake_slack.posts(thread=False))
        for b in bots:
            wait_ticks(b)
        assert len(fake_slack.posts(thread=False)) == 1
        assert len(fake_slack.top_level()) == 1

        for c in clocks:
            c.advance(hours=6, seconds=1)  # past the deadline for both
        fake_slack.wait_for(lambda: fake_slack.posts(thread=True))
        for b in bots:
            wait_ticks(b)
        assert len(fake_slack.posts(thread=True)) == 1
        assert len(fake_slack.messages[CHANNEL]) == 2
        assert len(fake_slack.calls_to("chat.update")) == 1
        assert all(db.one_drill(b).status == DrillStatus.CLOSED for b in bots)
    finally:
        # Bot.stop() waits for every non-daemon thread of the process, the other bot's included:
        # stop the first briefly, then the second (which then waits for both), to keep teardown short.
        bots[0].stop(deadline_seconds=0.5)
        bots[1].stop(deadline_seconds=5)
