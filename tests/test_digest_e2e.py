"""The weekly digest (DRILL_DIGEST) end to end: one DM per manager, exactly once per slot.

A week of drills is seeded through the real service (posts to the fake Slack, answers as message events,
reveals, self-ratings); then the running bot, on an injected clock, sends the digest from its scheduler.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import select

from bot.runtime import build_runtime
from storage.models import DigestSent
from tests.fakes.slack import Failure, FakeSlack
from tests.fakes.workspace import CHANNEL, TEST_BANK

BANK = {q["id"]: q for q in yaml.safe_load(TEST_BANK.read_text(encoding="utf-8"))["questions"]}
WEEKLY = "0 9 * * 1"  # Mondays 09:00 (DRILL_TIMEZONE, UTC here)
MANAGERS = ("UMGRONE01", "UMGRTWO02")
DIGEST_MONDAY = date(2024, 3, 11)
RATING_BY_CATEGORY = {"databases": "missed", "apis": "partly", "caching": "nailed"}

# Who answered which drill. 03-03 and 03-04 are before the digest's 7 days (03-05 .. 03-11).
ANSWERS = {
    date(2024, 3, 3): ["UALICE", "UBOB", "UCAROL"],
    date(2024, 3, 4): ["UALICE", "UBOB", "UCAROL"],
    date(2024, 3, 5): ["UALICE", "UCAROL", "UERIN"],
    date(2024, 3, 6): ["UALICE", "UERIN"],
    date(2024, 3, 7): ["UALICE", "UDAVE", "UERIN"],
}
PRIVATE = ("UCAROL", "UERIN")


def utc(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


def digest_settings(make_settings: Any, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "drill_schedule": "off",  # the scheduler posts no drill by itself here: the only posts are the DMs
        "drill_answer_window": "1h",
        "drill_digest": WEEKLY,
        "drill_managers": ",".join(MANAGERS),
    }
    values.update(overrides)
    return make_settings(**values)


def seed_week(settings: Any, clock: Any) -> dict[date, str]:
    """The drills of ANSWERS, closed, with self-ratings; returns each day's question id."""
    clock.set(utc(date(2024, 3, 3), 10))
    runtime = build_runtime(settings, clock=clock)
    service = runtime.service
    questions: dict[date, str] = {}
    try:
        for day, users in ANSWERS.items():
            clock.set(utc(day, 10))
            outcome = service.post_today()
            assert outcome.result == "posted", outcome
            questions[day] = str(outcome.question_id)
            for n, user in enumerate(users):
                event = {
                    "type": "message",
                    "channel": CHANNEL,
                    "user": user,
                    "text": f"answer by {user}",
                    "ts": f"{utc(day, 10, 5 + n).timestamp():.6f}",
                    "thread_ts": outcome.ts,
                }
                assert service.handle_message_event(event, "UBOTDRILL") == "answer recorded"
            clock.set(utc(day, 11, 0, 10))
            assert service.reveal_due() == [outcome.drill_id]
            category = BANK[questions[day]]["category"]
            assert service.rate(int(outcome.drill_id), "UALICE", RATING_BY_CATEGORY[category]) is None  # stored
        for user in PRIVATE:
            service.set_private(user, True)
    finally:
        service.close()
        runtime.db.dispose()
    assert {BANK[q]["category"] for q in questions.values()} == set(RATING_BY_CATEGORY), "every category rated"
    return questions


def dms(fake: FakeSlack) -> list[dict[str, Any]]:
    return [c.params for c in fake.posts() if c.params.get("channel") in MANAGERS]


def text_of(message: dict[str, Any]) -> str:
    return "\n".join(
        block.get("text", {}).get("text", "") for block in message.get("blocks") or [] if isinstance(block, dict)
    )


def test_weekly_digest_goes_to_each_manager_once(start_bot, make_settings, fake_slack, make_clock, wait_ticks, db):
    settings = digest_settings(make_settings)
    questions = seed_week(settings, make_clock())
    seeded_posts = len(fake_slack.channel_posts())

    # Sunday 09:00 and Monday 08:59:50: not a digest slot.
    clock = make_clock(utc(DIGEST_MONDAY - timedelta(days=1), 9, 0, 5))
    first, _ = start_bot(settings=settings, clock=clock)
    replica, _ = start_bot(settings=settings, clock=clock)  # a replica on the same database
    both = (first, replica)
    for bot in both:
        wait_ticks(bot)
    clock.set(utc(DIGEST_MONDAY, 8, 59, 50))
    for bot in both:
        wait_ticks(bot)
    assert len(fake_slack.channel_posts()) == seeded_posts, "nothing before Monday 09:00"

    clock.set(utc(DIGEST_MONDAY, 9, 0, 5))
    fake_slack.wait_for(lambda: len(dms(fake_slack)) >= len(MANAGERS), timeout=10)
    for bot in both:
        wait_ticks(bot)
    clock.set(utc(DIGEST_MONDAY, 9, 30))
    for bot in both:
        wait_ticks(bot)
    restarted, _ = start_bot(settings=settings, clock=clock)  # a restart within the hour
    wait_ticks(restarted)
    sent = dms(fake_slack)
    assert sorted(m["channel"] for m in sent) == sorted(MANAGERS), "exactly one DM per manager, by user id"
    assert len(fake_slack.channel_posts()) == seeded_posts + len(MANAGERS), "nothing else was posted"
    assert all(not m.get("thread_ts") for m in sent)
    assert sent[0]["blocks"] == sent[1]["blocks"]

    body = text_of(sent[0])
    everything = json.dumps(sent[0], ensure_ascii=False)
    assert "Weekly drill digest" in everything
    assert "2024-03-05 to 2024-03-11" in body
    assert f"<#{CHANNEL}>" in body
    # Participation per drill of the last 7 days, and only those.
    for day, expected in ((date(2024, 3, 5), 3), (date(2024, 3, 6), 2), (date(2024, 3, 7), 3)):
        assert f"{day.isoformat()}: {expected} answered ({BANK[questions[day]]['title']})" in body, day
    assert "2024-03-03" not in body and "2024-03-04" not in body
    assert "*Active people:* 4" in body
    # Streak changes: names for public people, a count for private ones.
    assert "*Streaks grew:* <@UALICE>, <@UDAVE>" in body
    assert "*Streaks broken:* <@UBOB>" in body
    assert "plus 2 changes of people who keep their streaks private" in body
    for user in PRIVATE:
        assert user not in everything, f"private {user} named in the digest"
    # Weakest categories from the self-ratings, weakest first.
    assert "databases (0.0/2), apis (1.0/2), caching (2.0/2)" in body

    with db.session(settings.database_url) as session:
        claims = list(session.scalars(select(DigestSent)))
        assert len(claims) == 2 and len({c.slot for c in claims}) == 1  # one per manager, one slot


def test_a_slot_missed_by_more_than_an_hour_is_not_sent_late(start_bot, make_settings, fake_slack, make_clock, wait_ticks, db):
    settings = digest_settings(make_settings)
    # The bot was down over Monday 09:00 and comes back at 10:00:01: too late for this week.
    clock = make_clock(utc(DIGEST_MONDAY, 10, 0, 1))
    bot, _ = start_bot(settings=settings, clock=clock)
    wait_ticks(bot)
    clock.set(utc(DIGEST_MONDAY, 15))
    wait_ticks(bot)
    assert dms(fake_slack) == []
    with db.session(settings.database_url) as session:
        assert list(session.scalars(select(DigestSent))) == []

    # Next week it is back at 09:40, within the hour after the slot: that one is caught up, once.
    clock.set(utc(DIGEST_MONDAY + timedelta(days=7), 9, 40))
    fake_slack.wait_for(lambda: len(dms(fake_slack)) >= len(MANAGERS), timeout=10)
    wait_ticks(bot)
    assert sorted(m["channel"] for m in dms(fake_slack)) == sorted(MANAGERS)
    assert "No drills this week." in text_of(dms(fake_slack)[0])


def test_a_dm_slack_refused_for_a_moment_still_reaches_its_manager(start_bot, make_settings, fake_slack, make_clock, wait_ticks):
    """'Exactly once per slot': a DM that Slack refused (HTTP 500, nothing posted) is not simply lost."""
    settings = digest_settings(make_settings)
    fake_slack.fail_next("chat.postMessage", Failure(status=500))  # the first DM (managers go in order)
    clock = make_clock(utc(DIGEST_MONDAY, 9, 0, 5))
    bot, _ = start_bot(settings=settings, clock=clock)
    fake_slack.wait_for(lambda: len(fake_slack.calls_to("chat.postMessage")) >= len(MANAGERS), timeout=10)
    for minutes in (1, 5, 15, 30, 50):  # well within the hour after the slot
        clock.set(utc(DIGEST_MONDAY, 9, minutes))
        wait_ticks(bot)
    delivered = sorted(m["channel"] for m in dms(fake_slack))
    assert delivered == sorted(MANAGERS), f"delivered to {delivered} only"
