"""End-to-end: posting and revealing drills with the real bot in-process and a fake Slack over HTTP.

Time is injected (`start_bot(clock=...)`) wherever the schedule matters; the clock also counts how often
it is read, which is how these tests know the scheduler has ticked a few times (each job reads the clock
once per tick) without sleeping for a guessed while.

Note on dates: the fake Slack numbers messages from ts 1_700_000_000 (2023-11-14 22:13 UTC) upwards, and
adoption looks for messages from the start of the drill's day, so the injected days here are in
November 2023, on or before the 14th where adoption is involved.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.domain.questions import Question, load_bank
from bot.runtime import Bot, build_runtime
from bot.settings import Settings
from storage import repo
from storage.models import Drill, DrillStatus
from tests.conftest import CHANNEL, TEST_BANK, reply_event
from tests.fakes.slack import Failure, FakeSlack

TUESDAY = datetime(2023, 11, 14, 10, 0, 5, tzinfo=UTC)  # a weekday, 5 s after the 10:00 slot
SATURDAY = datetime(2023, 11, 18, 10, 0, 5, tzinfo=UTC)
MONDAY = datetime(2023, 11, 20, 10, 0, 5, tzinfo=UTC)
BEFORE_SLOT = TUESDAY.replace(hour=9, minute=59, second=0)  # same weekday, schedule not yet due
NEVER = "0 0 1 1 *"  # a schedule that does not fire during these tests
BANK = load_bank(str(TEST_BANK))


class Clock:
    """An injectable clock: frozen at `moment` (movable), or real time; counts reads to observe ticks."""

    def __init__(self, moment: datetime | None = None) -> None:
        self._moment = moment
        self._lock = threading.Lock()
        self.reads = 0

    def now(self) -> datetime:
        with self._lock:
            self.reads += 1
            return self._moment if self._moment is not None else datetime.now(UTC)

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._moment = moment

    def advance(self, **delta: float) -> None:
        with self._lock:
            assert self._moment is not None
            self._moment += timedelta(**delta)


def wait_ticks(clock: Clock, reads: int = 10, timeout: float = 10.0) -> None:
    """Wait until the clock was read `reads` more times (two jobs, one read each per tick)."""
    target = clock.reads + reads
    deadline = time.monotonic() + timeout
    while clock.reads < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"the scheduler did not tick ({clock.reads}/{target} clock reads)")
        time.sleep(0.02)


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


def drills(bot_or_runtime: Any) -> list[Drill]:
    runtime = getattr(bot_or_runtime, "runtime", bot_or_runtime)
    with runtime.db.transaction() as session:
        return list(session.scalars(select(Drill).order_by(Drill.id)))


def only_drill(bot: Bot) -> Drill:
    rows = drills(bot)
    assert len(rows) == 1, rows
    return rows[0]


def question_of(bot: Bot, drill_id: int) -> Question:
    row = next(d for d in drills(bot) if d.id == drill_id)
    question = BANK.get(row.question_id)
    assert question is not None
    return question


def top_level(fake: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in fake.messages[CHANNEL] if not m.get("thread_ts")]


def drill_id_of(call_params: dict[str, Any]) -> int:
    return int(call_params["metadata"]["event_payload"]["drill_id"])


StartBot = Callable[..., tuple[Bot, Any]]


# -- scheduled posting -------------------------------------------------------------------------------


def test_scheduler_posts_one_drill_on_a_weekday_slot(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    clock = Clock(TUESDAY)
    bot, _ = start_bot(clock=clock.now)

    fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=5)
    wait_ticks(clock, 12)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert len(fake_slack.messages[CHANNEL]) == 1
    drill = only_drill(bot)
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == fake_slack.messages[CHANNEL][0]["ts"]
    assert drill.day == TUESDAY.date()
    assert drill.deadline == TUESDAY + timedelta(hours=6)  # default answer window


def test_scheduler_posts_nothing_on_saturday(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    clock = Clock(SATURDAY)
    bot, _ = start_bot(clock=clock.now)

    wait_ticks(clock, 12)
    assert fake_slack.calls_to("chat.postMessage") == []
    assert drills(bot) == []

    # The same running scheduler does post once the clock reaches a weekday slot.
    clock.set(MONDAY)
    fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=5)
    assert only_drill(bot).day == MONDAY.date()


def test_drill_message_content(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    clock = Clock(TUESDAY)
    bot, _ = start_bot(clock=clock.now)
    post = fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=5)[0]
    params = post.params
    drill = only_drill(bot)
    question = question_of(bot, drill.id)
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
    assert drill_id_of(params) == drill.id


def test_at_most_one_drill_per_channel_per_day_even_across_a_restart(
    start_bot: StartBot, make_settings: Callable[..., Settings], fake_slack: FakeSlack
) -> None:
    settings = make_settings()
    clock = Clock(TUESDAY)
    bot, _ = start_bot(settings=settings, clock=clock.now)
    fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=5)
    ts = fake_slack.messages[CHANNEL][0]["ts"]

    again = bot.runtime.service.post_today()
    assert again.result == "exists"
    assert again.ts == ts
    assert len(fake_slack.calls_to("chat.postMessage")) == 1

    bot.stop(deadline_seconds=5)
    clock.advance(minutes=1)
    restarted, _ = start_bot(settings=settings, clock=clock.now)
    wait_ticks(clock, 12)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert restarted.runtime.service.post_today().result == "exists"
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert only_drill(restarted).ts == ts
    restarted.stop(deadline_seconds=5)  # now, so the fixture's second stop of `bot` has no threads to wait on


def test_rotation_uses_every_question_before_starting_over(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    days = [TUESDAY + timedelta(days=n) for n in (0, 1, 2, 3)] + [MONDAY, MONDAY + timedelta(days=1)]
    clock = Clock(days[0])
    bot, _ = start_bot(clock=clock.now)

    picked: list[str] = []
    for n, day in enumerate(days, start=1):
        clock.set(day)
        fake_slack.wait_for(lambda n=n: len(fake_slack.posts(thread=False)) >= n, timeout=5)
        posts = fake_slack.posts(thread=False)
        assert len(posts) == n
        picked.append(question_of(bot, drill_id_of(posts[-1].params)).id)

    assert len(BANK.ids) == 3
    assert sorted(picked[:3]) == sorted(BANK.ids), picked  # three days, three different questions
    assert picked[3] in BANK.ids  # day 4 starts a new cycle
    assert sorted(picked[3:]) == sorted(BANK.ids), picked  # and that cycle again uses each once


# -- Slack failures while posting ------------------------------------------------------------------


def test_rate_limited_post_is_retried_after_retry_after(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("chat.postMessage", Failure(status=429, headers={"Retry-After": "1"}))
    clock = Clock(TUESDAY)
    bot, _ = start_bot(clock=clock.now)

    fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=10)
    wait_ticks(clock, 10)

    calls = fake_slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.95, calls[1].at - calls[0].at
    assert len(fake_slack.messages[CHANNEL]) == 1
    drill = only_drill(bot)
    assert drill.status == DrillStatus.OPEN
    assert drill.ts == fake_slack.messages[CHANNEL][0]["ts"]


def test_uncertain_failure_is_adopted_through_metadata(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    clock = Clock(BEFORE_SLOT)  # the schedule is not due: only the explicit post runs
    bot, _ = start_bot(clock=clock.now)
    fake_slack.fail_next("chat.postMessage", Failure(status=500, act=True))

    outcome = bot.runtime.service.post_today()
    assert outcome.result == "retrying"
    assert len(fake_slack.messages[CHANNEL]) == 1  # Slack did store it
    assert only_drill(bot).status == DrillStatus.POSTING

    # Within the retry delay nothing is tried again.
    wait_ticks(clock, 12)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert fake_slack.calls_to("conversations.history") == []

    clock.advance(seconds=6)  # past the first retry delay (5 s)
    fake_slack.wait_for(lambda: only_drill(bot).status == DrillStatus.OPEN, timeout=5)
    wait_ticks(clock, 10)

    assert len(fake_slack.messages[CHANNEL]) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # adopted, not posted again
    history = fake_slack.calls_to("conversations.history")
    assert history and str(history[0].params.get("include_all_metadata")).lower() in ("1", "true")
    drill = only_drill(bot)
    assert drill.ts == fake_slack.messages[CHANNEL][0]["ts"]
    assert drill.id == outcome.drill_id


def test_invalid_auth_fails_once_and_is_not_retried_in_a_loop(
    start_bot: StartBot, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock(BEFORE_SLOT)
    bot, _ = start_bot(clock=clock.now)
    fake_slack.fail_next("chat.postMessage", Failure(status=200, body={"ok": False, "error": "invalid_auth"}))

    outcome = bot.runtime.service.post_today()
    assert outcome.result == "failed"
    assert "invalid_auth" in outcome.detail

    clock.set(TUESDAY)  # now the schedule is due as well
    wait_ticks(clock, 15)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert fake_slack.messages[CHANNEL] == []
    assert only_drill(bot).status == DrillStatus.POST_FAILED
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "invalid_auth" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]


# -- revealing ---------------------------------------------------------------------------------------


def test_reveal_after_deadline_posts_guidance_and_closes_the_drill(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    clock = Clock()  # real time, counted
    bot, slack = start_bot(clock=clock.now, drill_schedule=NEVER, drill_answer_window="2s")
    posted = bot.runtime.service.post_today()
    assert posted.result == "posted"
    drill_ts = str(posted.ts)
    deadline = only_drill(bot).deadline

    status, _ = slack.event(reply_event(drill_ts, user="UALICE"))
    assert status == 200
    drill_id = only_drill(bot).id
    with bot.runtime.db.transaction() as session:
        assert repo.answerer_count(session, drill_id) == 1

    reveals = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=17)
    updates = fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update"), timeout=5)
    wait_ticks(clock, 10)

    reveals = fake_slack.posts(thread=True)
    assert len(reveals) == 1
    reveal = reveals[0]
    assert reveal.params["thread_ts"] == drill_ts
    assert deadline.timestamp() <= reveal.at <= deadline.timestamp() + 15
    question = question_of(bot, posted.drill_id or 0)
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

    drill = only_drill(bot)
    assert drill.status == DrillStatus.CLOSED
    assert drill.answer_count == 1
    assert drill.reveal_ts == next(m["ts"] for m in fake_slack.messages[CHANNEL] if m.get("thread_ts"))


def test_drill_posted_by_another_runtime_is_revealed_by_the_running_bot(
    start_bot: StartBot, make_settings: Callable[..., Settings], fake_slack: FakeSlack
) -> None:
    settings = make_settings(drill_schedule=NEVER, drill_answer_window="2s")
    clock = Clock()
    bot, _ = start_bot(settings=settings, clock=clock.now)

    other = build_runtime(settings)  # e.g. `drillbot post` in another process: no Bot, no scheduler
    try:
        posted = other.service.post_today()
    finally:
        other.db.dispose()
    assert posted.result == "posted"

    reveal = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=10)[0]
    wait_ticks(clock, 10)
    assert len(fake_slack.posts(thread=True)) == 1
    assert reveal.params["thread_ts"] == posted.ts
    assert len(fake_slack.posts(thread=False)) == 1
    assert only_drill(bot).status == DrillStatus.CLOSED


def test_drill_overdue_while_no_bot_ran_is_revealed_right_after_start(
    start_bot: StartBot, make_settings: Callable[..., Settings], fake_slack: FakeSlack
) -> None:
    settings = make_settings(drill_schedule=NEVER, drill_answer_window="2s")
    five_minutes_ago = Clock(datetime.now(UTC) - timedelta(minutes=5))
    offline = build_runtime(settings, clock=five_minutes_ago.now)
    try:
        posted = offline.service.post_today()  # its deadline passed minutes ago, with no bot running
    finally:
        offline.db.dispose()
    assert posted.result == "posted"
    assert fake_slack.posts(thread=True) == []

    started = time.time()
    bot, _ = start_bot(settings=settings)
    reveal = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=5)[0]
    assert reveal.at - started < 3
    assert reveal.params["thread_ts"] == posted.ts
    # The reveal is recorded just after Slack has it (the closed badge is updated first).
    fake_slack.wait_for(lambda: only_drill(bot).status == DrillStatus.CLOSED, timeout=5)


def test_two_bots_on_one_database_post_and_reveal_exactly_once(
    start_bot: StartBot, make_settings: Callable[..., Settings], fake_slack: FakeSlack
) -> None:
    settings = make_settings()
    clocks = [Clock(BEFORE_SLOT), Clock(BEFORE_SLOT)]
    bots = [start_bot(settings=settings, clock=c.now)[0] for c in clocks]
    try:
        for c in clocks:
            wait_ticks(c, 4)  # both schedulers are ticking
        # Slack takes a moment to answer (0.3 s, well within its usual latency), so one bot's tick
        # overlaps the other bot's call in flight: the case the claims exist for.
        fake_slack.delays["chat.postMessage"] = 0.3

        for c in clocks:
            c.set(TUESDAY)
        fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=5)
        for c in clocks:
            wait_ticks(c, 12)
        assert len(fake_slack.posts(thread=False)) == 1
        assert len(top_level(fake_slack)) == 1

        for c in clocks:
            c.advance(hours=6, seconds=1)  # past the deadline for both
        fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=5)
        for c in clocks:
            wait_ticks(c, 12)
        assert len(fake_slack.posts(thread=True)) == 1
        assert len(fake_slack.messages[CHANNEL]) == 2
        assert len(fake_slack.calls_to("chat.update")) == 1
        assert all(only_drill(b).status == DrillStatus.CLOSED for b in bots)
    finally:
        # Bot.stop() waits for every non-daemon thread of the process, the other bot's included:
        # stop the first briefly, then the second (which then waits for both), to keep teardown short.
        bots[0].stop(deadline_seconds=0.5)
        bots[1].stop(deadline_seconds=5)
