"""Answers end to end: real signed Slack events into the running bot, checked in the database.

Each test posts a drill through the real service (to the fake Slack), then sends thread replies, edits,
deletes and noise as Slack would, and reads back what the bot stored.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.drills import PostResult
from storage import repo
from storage.models import Answer
from tests.fakes.events import reply_event
from tests.fakes.slack import BOT_ID, BOT_USER_ID
from tests.fakes.workspace import CHANNEL

NEVER = "off"  # the scheduler does not post on its own during a test


def open_drill(start_bot: Any, fake_slack: Any, **overrides: Any) -> tuple[Any, Any, int, str]:
    """Start the bot, post today's drill, return (bot, sender, drill id, drill ts)."""
    overrides.setdefault("drill_schedule", NEVER)
    bot, slack = start_bot(**overrides)
    outcome = bot.runtime.service.post_today()
    assert outcome.result == PostResult.POSTED
    top_level = [m for m in fake_slack.messages[CHANNEL] if not m.get("thread_ts")]
    assert len(top_level) == 1
    drill_ts = top_level[0]["ts"]
    assert outcome.ts == drill_ts and outcome.drill_id is not None
    return bot, slack, outcome.drill_id, drill_ts


def answerers(bot: Any, drill_id: int) -> int:
    with bot.runtime.db.transaction() as session:
        return repo.answerer_count(session, drill_id)


def answer_rows(bot: Any, drill_id: int) -> list[Answer]:
    with bot.runtime.db.transaction() as session:
        return list(session.scalars(select(Answer).where(Answer.drill_id == drill_id).order_by(Answer.id)))


def totals(bot: Any) -> dict[str, int]:
    return {s.user_id: s.total for s in bot.runtime.service.leaderboard()}


def ok(response: tuple[int, bytes]) -> None:
    status, body = response
    assert status == 200, (status, body)


def now_ts(offset: float = 0.0) -> str:
    return f"{time.time() + offset:.6f}"


# -- counting -------------------------------------------------------------------------------------


def test_person_thread_reply_counts(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    assert answerers(bot, drill_id) == 0

    status, _ = slack.event(reply_event(drill_ts, user="UALICE", text="use a queue"))

    assert status == 200
    assert answerers(bot, drill_id) == 1
    assert totals(bot) == {"UALICE": 1}
    [row] = answer_rows(bot, drill_id)
    assert (row.user_id, row.text, row.channel, row.deleted) == ("UALICE", "use a queue", CHANNEL, False)


def test_three_replies_by_one_person_count_once(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)

    for i in range(3):
        ok(slack.event(reply_event(drill_ts, user="UALICE", ts=now_ts(i * 0.001), text=f"part {i}")))

    assert len(answer_rows(bot, drill_id)) == 3  # every reply is kept ...
    assert answerers(bot, drill_id) == 1  # ... but the person counts once for the drill
    assert totals(bot) == {"UALICE": 1}

    ok(slack.event(reply_event(drill_ts, user="UBOB")))
    assert answerers(bot, drill_id) == 2


def test_redelivered_event_counts_once(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    event = reply_event(drill_ts, user="UALICE")

    ok(slack.event(event, event_id="EvRETRY0001"))
    ok(slack.event(event, event_id="EvRETRY0001", retry_num=1))
    ok(slack.event(event, event_id="EvRETRY0001", retry_num=2))

    assert len(answer_rows(bot, drill_id)) == 1
    assert answerers(bot, drill_id) == 1
    assert totals(bot) == {"UALICE": 1}


def test_same_message_under_new_event_id_counts_once(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    event = reply_event(drill_ts, user="UALICE")

    ok(slack.event(event, event_id="EvFIRST00001"))
    ok(slack.event(dict(event), event_id="EvSECOND0002"))

    assert len(answer_rows(bot, drill_id)) == 1
    assert answerers(bot, drill_id) == 1


# -- what is not an answer -------------------------------------------------------------------------


def test_bot_messages_are_ignored(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)

    # Another bot posting with a user id attached.
    ok(slack.event(reply_event(drill_ts, user="UOTHERBOT", bot_id="BOTHER01")))
    # A classic bot_message (no user, or with one).
    ok(slack.event(reply_event(drill_ts, user="UOTHERBOT2", subtype="bot_message", bot_id="BOTHER02")))
    bot_message = reply_event(drill_ts, user="X", subtype="bot_message", bot_id="BOTHER03", username="helper")
    del bot_message["user"]
    ok(slack.event(bot_message))
    # drillbot's own messages, by user id and by bot id.
    ok(slack.event(reply_event(drill_ts, user=BOT_USER_ID)))
    ok(slack.event(reply_event(drill_ts, user=BOT_USER_ID, bot_id=BOT_ID)))

    assert answer_rows(bot, drill_id) == []
    assert answerers(bot, drill_id) == 0
    assert totals(bot) == {}

    ok(slack.event(reply_event(drill_ts, user="UALICE")))  # the thread does accept a person's reply
    assert answerers(bot, drill_id) == 1


def test_top_level_and_other_thread_messages_are_ignored(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)

    top_level = reply_event(drill_ts, user="UALICE", text="hello channel")
    del top_level["thread_ts"]
    ok(slack.event(top_level))
    ok(slack.event(reply_event("1690000000.000100", user="UALICE", text="other thread")))
    ok(slack.event(reply_event(drill_ts, user="UALICE", channel="COTHER0001", text="other channel")))
    # The drill message itself (thread_ts == ts), as Slack sends for a thread parent.
    ok(slack.event(reply_event(drill_ts, user="UALICE", ts=drill_ts)))

    assert answer_rows(bot, drill_id) == []
    assert totals(bot) == {}

    ok(slack.event(reply_event(drill_ts, user="UALICE")))
    assert answerers(bot, drill_id) == 1


# -- edits and deletes -----------------------------------------------------------------------------


def _edit_event(reply: dict[str, Any], new_text: str) -> dict[str, Any]:
    edited_at = now_ts()
    message = {k: v for k, v in reply.items() if k not in ("channel", "event_ts", "channel_type")}
    message.update(text=new_text, edited={"user": reply["user"], "ts": edited_at})
    previous = {k: v for k, v in reply.items() if k not in ("channel", "event_ts", "channel_type")}
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": CHANNEL,
        "channel_type": "channel",
        "ts": edited_at,
        "event_ts": edited_at,
        "message": message,
        "previous_message": previous,
    }


def _delete_event(reply: dict[str, Any]) -> dict[str, Any]:
    deleted_at = now_ts()
    previous = {k: v for k, v in reply.items() if k not in ("channel", "event_ts", "channel_type")}
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": CHANNEL,
        "channel_type": "channel",
        "ts": deleted_at,
        "event_ts": deleted_at,
        "deleted_ts": reply["ts"],
        "previous_message": previous,
    }


def test_edit_updates_the_stored_text(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    reply = reply_event(drill_ts, user="UALICE", text="first draft")
    ok(slack.event(reply))
    [before] = answer_rows(bot, drill_id)
    assert before.text == "first draft"

    ok(slack.event(_edit_event(reply, "second, better draft")))

    [after] = answer_rows(bot, drill_id)
    assert after.message_ts == reply["ts"]
    assert after.text == "second, better draft"
    assert after.updated_at >= before.updated_at
    assert answerers(bot, drill_id) == 1


def test_deleting_the_only_answer_withdraws_it(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    reply = reply_event(drill_ts, user="UALICE", text="oops, wrong thread")
    ok(slack.event(reply))
    assert answerers(bot, drill_id) == 1

    ok(slack.event(_delete_event(reply)))

    assert answerers(bot, drill_id) == 0
    assert totals(bot) == {}
    [row] = answer_rows(bot, drill_id)
    assert row.deleted is True and row.text == ""


def test_deleting_one_of_two_replies_keeps_the_person_counted(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    first = reply_event(drill_ts, user="UALICE", ts=now_ts(), text="part one")
    second = reply_event(drill_ts, user="UALICE", ts=now_ts(0.001), text="part two")
    ok(slack.event(first))
    ok(slack.event(second))

    ok(slack.event(_delete_event(first)))

    assert answerers(bot, drill_id) == 1
    assert totals(bot) == {"UALICE": 1}
    rows = {r.message_ts: r for r in answer_rows(bot, drill_id)}
    assert rows[first["ts"]].deleted is True
    assert rows[second["ts"]].deleted is False and rows[second["ts"]].text == "part two"


# -- the deadline ----------------------------------------------------------------------------------


def test_reply_written_after_the_deadline_does_not_count(start_bot, fake_slack, make_clock, db):
    clock = make_clock(datetime.now(UTC), running=True)
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack, drill_answer_window="1h", clock=clock)
    deadline = db.drill(bot, drill_id).deadline
    ok(slack.event(reply_event(drill_ts, user="UALICE", ts=clock().timestamp())))  # in time
    assert answerers(bot, drill_id) == 1

    # The scheduler reveals once the deadline has passed; that is our signal, no fixed sleep.
    clock.set(deadline + timedelta(seconds=1))
    fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=10)
    late_ts = f"{deadline.timestamp() + 0.5:.6f}"

    status, _ = slack.event(reply_event(drill_ts, user="UBOB", ts=late_ts, text="too late"))

    assert status == 200
    assert answerers(bot, drill_id) == 1
    assert [r.user_id for r in answer_rows(bot, drill_id)] == ["UALICE"]
    assert totals(bot) == {"UALICE": 1}


# -- awkward text ----------------------------------------------------------------------------------


def test_awkward_answer_text_is_stored(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    texts = {
        "ULONG": "x" * 40_000,
        "UEMOJI": "🚀 scale out 👩🏽‍💻 then cache 🧠🔥 :tada:",
        "URTL": "שלום עולם — مرحبا بالعالم \u202ereversed\u202c",
        "UNUL": "before\x00after",
    }
    for i, (user, text) in enumerate(texts.items()):
        status, body = slack.event(reply_event(drill_ts, user=user, ts=now_ts(i * 0.001), text=text))
        assert status == 200, (user, status, body)

    assert answerers(bot, drill_id) == len(texts)
    stored = {r.user_id: r.text for r in answer_rows(bot, drill_id)}
    assert stored["ULONG"] == texts["ULONG"]
    assert stored["UEMOJI"] == texts["UEMOJI"]
    assert stored["URTL"] == texts["URTL"]
    # NUL cannot live in a PostgreSQL text column; everything around it must survive.
    assert stored["UNUL"] in (texts["UNUL"], "before\ufffdafter")


# -- everything else is acknowledged ---------------------------------------------------------------


def test_ignored_events_are_acknowledged(start_bot, fake_slack):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    ignored = [
        {
            "type": "reaction_added",
            "user": "UALICE",
            "reaction": "thumbsup",
            "item": {"type": "message", "channel": CHANNEL, "ts": drill_ts},
            "event_ts": now_ts(),
        },
        {
            "type": "app_mention",
            "user": "UALICE",
            "text": f"<@{BOT_USER_ID}> hi",
            "ts": now_ts(),
            "channel": CHANNEL,
            "event_ts": now_ts(),
        },
        {
            "type": "message",
            "channel": CHANNEL,
            "text": "no user",
            "ts": now_ts(),
            "thread_ts": drill_ts,
            "event_ts": now_ts(),
        },
        {"type": "member_joined_channel", "user": "UALICE", "channel": CHANNEL, "event_ts": now_ts()},
        {
            "type": "message",
            "subtype": "channel_join",
            "user": "UALICE",
            "channel": CHANNEL,
            "ts": now_ts(),
            "event_ts": now_ts(),
        },
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": CHANNEL,
            "deleted_ts": "1.000001",
            "ts": now_ts(),
            "event_ts": now_ts(),
        },
        {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": now_ts(), "event_ts": now_ts()},
    ]
    for event in ignored:
        status, body = slack.event(event)
        assert 200 <= status < 300, (event["type"], event.get("subtype"), status, body)

    assert answer_rows(bot, drill_id) == []
    status, _ = slack.get("/healthz")
    assert status == 200


def test_messages_that_cannot_be_answers_are_acknowledged_at_the_edge_replies_stored_by_the_intake(
    start_bot, fake_slack
):
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    edge = bot.server.listeners[0].app
    dispatched: list[str] = []
    real_dispatch = edge.app.dispatch

    def counting_dispatch(request):  # type: ignore[no-untyped-def]
        dispatched.append(request.body["event"].get("subtype") or "reply")
        return real_dispatch(request)

    edge.app.dispatch = counting_dispatch
    chatter = reply_event(drill_ts, user="UALICE", text="hello channel")
    del chatter["thread_ts"]
    bot_reply = reply_event(drill_ts, user="UOTHERBOT", bot_id="BOTHER01")
    join = {"type": "message", "subtype": "channel_join", "user": "UALICE", "channel": CHANNEL, "ts": now_ts()}
    for event in (chatter, bot_reply, join):
        ok(slack.event(event))
    assert dispatched == []
    counted = bot.runtime.metrics.registry.get_sample_value("drillbot_requests_total", {"type": "event", "status": "200"})
    assert counted == 3  # still counted as Slack requests

    # A person's thread reply is stored by the answer intake, straight from the edge (no Bolt dispatch);
    # its edit and delete go to the listener.
    reply = reply_event(drill_ts, user="UALICE", text="first draft")
    ok(slack.event(reply))
    assert dispatched == []
    assert [row.text for row in answer_rows(bot, drill_id)] == ["first draft"]
    ok(slack.event(_edit_event(reply, "second draft")))
    ok(slack.event(_delete_event(reply)))
    assert dispatched == ["message_changed", "message_deleted"]
    [row] = answer_rows(bot, drill_id)
    assert (row.text, row.deleted) == ("", True)
