"""Answers end to end: real signed Slack events into the running bot, checked in the database.

Each test posts a drill through the real service (to the fake Slack), then sends thread replies, edits,
deletes and noise as Slack would, and reads back what the bot stored. The last section watches the answer
intake (`bot.intake`) the HTTP edge hands people's replies to: bursts, failures, redeliveries.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.drills import DrillService, PostResult
from bot.intake import MAX_GROUP, AnswerIntake
from storage import repo
from storage.db import WouldWait
from storage.models import Answer
from tests.fakes.events import reply_event
from tests.fakes.slack import BOT_ID, BOT_USER_ID, Failure
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


# -- the answer intake: people's replies stored in groups, straight from the HTTP edge ----------------


class IntakeWatch:
    """What a running bot's answer intake does: the replies on its queue (`queued`) and the groups it
    stores or tries to, one transaction each, on the event loop or the writer thread (`groups`: each group's
    users, in order; an attempt on the loop that found the database busy is not one).

    Installed on the classes before the bot starts (the runtime binds `DrillService.record_replies` when it
    builds the intake). With `hold_first_until=n`, the first group goes to the writer thread and its
    transaction does not start until n replies are submitted: the writer is busy, the loop finds the
    database busy too, and what arrives meanwhile waits for the writer's next group.
    """

    def __init__(self, monkeypatch: Any, eventually: Any, *, hold_first_until: int = 0) -> None:
        self.queued: list[dict[str, Any]] = []
        self.groups: list[list[str]] = []
        self.released = False
        real_record, real_submit = DrillService.record_replies, AnswerIntake.submit
        watch = self

        def record_replies(service: DrillService, messages: Any, bot_user_id: str | None, *, wait: bool = True) -> Any:
            held = hold_first_until and not watch.released
            if held and not wait:
                # While the first group is held, the event loop finds the database busy (as while a writer
                # holds it): every reply goes to the writer thread's queue.
                raise WouldWait("the test holds the first group")
            users = [str(m["user"]) for m in messages]
            if held:
                watch.groups.append(users)
                eventually(lambda: len(watch.queued) >= hold_first_until, what=f"{hold_first_until} queued replies")
                watch.released = True
                return real_record(service, messages, bot_user_id, wait=wait)
            try:
                outcomes = real_record(service, messages, bot_user_id, wait=wait)
            except WouldWait:
                raise  # not a transaction: the group goes to the writer thread
            except Exception:
                watch.groups.append(users)
                raise
            watch.groups.append(users)
            return outcomes

        async def submit(intake: AnswerIntake, message: Any) -> Any:
            outcome = asyncio.ensure_future(real_submit(intake, message))
            await asyncio.sleep(0)  # the submit runs up to its wait first: the reply is on the queue
            watch.queued.append(message)
            return await outcome

        monkeypatch.setattr(DrillService, "record_replies", record_replies)
        monkeypatch.setattr(AnswerIntake, "submit", submit)

    @property
    def sizes(self) -> list[int]:
        return [len(group) for group in self.groups]


class BrokenInsert:
    """`storage.repo.insert_answer` failing like the database does (a lost connection, a full disk) for the
    replies whose ts is in `failing`, until the test empties it; `attempts` lists each failed statement."""

    def __init__(self, monkeypatch: Any, *failing: str) -> None:
        self.failing = set(failing)
        self.attempts: list[str] = []
        real_insert = repo.insert_answer

        def insert_answer(conn: Any, *, reply: repo.ThreadReply, folded: bool = False) -> bool:
            if reply.message_ts in self.failing:
                self.attempts.append(reply.message_ts)
                raise OperationalError("INSERT INTO answers ...", {}, Exception("disk I/O error"))
            return real_insert(conn, reply=reply, folded=folded)

        monkeypatch.setattr(repo, "insert_answer", insert_answer)


def send_all(slack: Any, events: list[dict[str, Any]], *, prefix: str = "EvBURST") -> list[int]:
    """Send `events` at once, each from a client thread of its own, as Slack does in a busy channel; the
    statuses, in the order of `events`."""
    start = threading.Barrier(len(events))

    def send(n: int) -> int:
        start.wait(10)
        status, _ = slack.event(events[n], event_id=f"{prefix}{n:05d}")
        return int(status)

    with ThreadPoolExecutor(max_workers=len(events)) as clients:
        return list(clients.map(send, range(len(events))))


def test_a_burst_of_replies_is_acknowledged_and_each_stored_once_in_groups(
    start_bot, fake_slack, monkeypatch, eventually
):
    watch = IntakeWatch(monkeypatch, eventually, hold_first_until=4)
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    burst = MAX_GROUP + 16  # more than one transaction may hold
    users = [f"UBURST{n:03d}" for n in range(burst)]
    base = time.time()
    events = [reply_event(drill_ts, user=user, ts=f"{base + n / 1000:.6f}", text=f"answer {n}")
              for n, user in enumerate(users)]

    statuses = send_all(slack, events)

    assert statuses == [200] * burst
    assert sorted(r.user_id for r in answer_rows(bot, drill_id)) == users  # every one stored, none twice
    assert answerers(bot, drill_id) == burst
    assert sorted(user for group in watch.groups for user in group) == users  # by the intake, once each
    assert max(watch.sizes) > 1, f"each reply had a transaction of its own: {watch.sizes}"
    assert max(watch.sizes) <= MAX_GROUP, watch.sizes


def test_a_reply_that_cannot_be_stored_fails_alone_and_the_rest_of_its_group_is_stored(
    start_bot, fake_slack, monkeypatch, eventually
):
    watch = IntakeWatch(monkeypatch, eventually, hold_first_until=4)
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    first = reply_event(drill_ts, user="UFIRST", ts=now_ts())
    group = [reply_event(drill_ts, user=user, ts=now_ts(0.001 * (n + 1))) for n, user in enumerate(("UANN", "UBAD", "UCAT"))]
    broken = BrokenInsert(monkeypatch, group[1]["ts"])

    with ThreadPoolExecutor(max_workers=1) as client:
        first_sent = client.submit(slack.event, first, event_id="EvFIRST00001")
        eventually(lambda: watch.groups, what="the writer busy with the first reply")
        statuses = send_all(slack, group, prefix="EvGROUP")
        assert first_sent.result(timeout=10)[0] == 200

    assert statuses == [200, 500, 200]  # only the reply that could not be stored is left for Slack to redeliver
    assert watch.sizes == [1, 3, 1, 1, 1]  # the group failed as a whole, then each of its replies alone
    assert sorted(watch.groups[1]) == ["UANN", "UBAD", "UCAT"]
    assert broken.attempts == [group[1]["ts"]] * 2
    assert sorted(r.user_id for r in answer_rows(bot, drill_id)) == ["UANN", "UCAT", "UFIRST"]

    broken.failing.clear()
    ok(slack.event(group[1], event_id="EvGROUP00001", retry_num=1))
    assert sorted(r.user_id for r in answer_rows(bot, drill_id)) == ["UANN", "UBAD", "UCAT", "UFIRST"]


def test_a_database_error_answers_500_stores_nothing_and_the_redelivery_is_stored(
    start_bot, fake_slack, monkeypatch, eventually
):
    watch = IntakeWatch(monkeypatch, eventually)
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    event = reply_event(drill_ts, user="UALICE")
    broken = BrokenInsert(monkeypatch, event["ts"])

    status, _ = slack.event(event, event_id="EvDBERROR001")

    assert status == 500  # not acknowledged: Slack redelivers it
    assert broken.attempts == [event["ts"]]
    assert answer_rows(bot, drill_id) == []
    assert totals(bot) == {}

    broken.failing.clear()  # the database is back
    ok(slack.event(event, event_id="EvDBERROR001", retry_num=1))

    [row] = answer_rows(bot, drill_id)
    assert (row.user_id, row.message_ts) == ("UALICE", event["ts"])
    assert totals(bot) == {"UALICE": 1}
    assert watch.groups == [["UALICE"], ["UALICE"]]  # both deliveries through the intake, not the listener


def test_the_bots_own_reply_without_a_bot_id_is_acknowledged_and_never_reaches_the_intake(
    start_bot, fake_slack, monkeypatch, eventually
):
    watch = IntakeWatch(monkeypatch, eventually)
    bot, slack, drill_id, drill_ts = open_drill(start_bot, fake_slack)
    assert bot.runtime.identity["user_id"] == BOT_USER_ID  # what the fake Slack's auth.test said
    own = reply_event(drill_ts, user=BOT_USER_ID, text="one hour left")
    assert "bot_id" not in own  # only the user id tells it from a person's reply

    ok(slack.event(own))

    assert watch.queued == []  # the edge knows the bot's user id: the listener gets it, and ignores it
    assert answer_rows(bot, drill_id) == []
    ok(slack.event(reply_event(drill_ts, user="UALICE")))  # a person's reply in the same thread does go in
    assert watch.groups == [["UALICE"]]
    assert [r.user_id for r in answer_rows(bot, drill_id)] == ["UALICE"]


def test_a_reply_to_a_drill_still_being_posted_answers_500_and_is_stored_once_redelivered(
    start_bot, fake_slack, monkeypatch, eventually
):
    watch = IntakeWatch(monkeypatch, eventually)
    # Real timestamps: a drill being posted may be a thread's parent only if claimed before it was written.
    fake_slack.use_real_timestamps()
    bot, slack = start_bot(drill_schedule=NEVER)
    slow = Failure(status=200, act=True, delay=30)  # Slack posts the drill at once; its answer comes late
    fake_slack.fail_next("chat.postMessage", slow)

    with ThreadPoolExecutor(max_workers=1) as poster:
        posting = poster.submit(bot.runtime.service.post_today)
        [drill] = fake_slack.wait_for(fake_slack.top_level)
        event = reply_event(drill["ts"], user="UALICE", ts=float(drill["ts"]) + 0.5)
        status, _ = slack.event(event, event_id="EvPOSTING001")
        assert status == 500  # the bot cannot tell yet whether this thread is its drill: Slack redelivers
        assert watch.groups == [["UALICE"]]
        slow.delay = 0  # chat.postMessage answers: the drill is confirmed
        outcome = posting.result(timeout=10)

    assert (outcome.result, outcome.ts) == (PostResult.POSTED, drill["ts"])
    assert answer_rows(bot, outcome.drill_id) == []
    ok(slack.event(event, event_id="EvPOSTING001", retry_num=1))
    assert [r.user_id for r in answer_rows(bot, outcome.drill_id)] == ["UALICE"]
    ok(slack.event(event, event_id="EvPOSTING001", retry_num=2))
    assert len(answer_rows(bot, outcome.drill_id)) == 1
    assert watch.sizes == [1, 1, 1]
