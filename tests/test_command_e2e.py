"""/interview-question end to end: really signed slash-command requests against the running bot.

The bot acks with an empty 200 at once and answers through the response_url, which the fake Slack
records as method "response_url".
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from tests.fakes.events import SlackSender
from tests.fakes.workspace import MANAGER, TEST_BANK

NEVER = "off"  # the scheduler never posts a drill by itself during a test

BANK = yaml.safe_load(TEST_BANK.read_text(encoding="utf-8"))
TITLES = {q["id"]: q["title"] for q in BANK["questions"]}
CATEGORIES = sorted({q["category"] for q in BANK["questions"]})
TAGS = sorted({t for q in BANK["questions"] for t in q["tags"]})


def everything(reply: dict[str, Any]) -> str:
    """The reply's text and blocks as one string (what a reader could see)."""
    return json.dumps({"text": reply.get("text"), "blocks": reply.get("blocks")}, ensure_ascii=False)


def title_in(reply: dict[str, Any]) -> str:
    found = [qid for qid, title in TITLES.items() if title in reply["text"]]
    assert len(found) == 1, f"expected exactly one bank title in {reply['text']!r}"
    return found[0]


# -- the ack ----------------------------------------------------------------------------------------


def test_ack_is_fast_while_slack_posting_is_slow(start_bot, fake_slack):
    bot, slack = start_bot(drill_schedule=NEVER)
    fake_slack.delays["chat.postMessage"] = 10
    posting = threading.Thread(target=bot.runtime.service.post_today, name="background-post")
    posting.start()
    try:
        fake_slack.wait_for(lambda: fake_slack.calls_to("chat.postMessage"), timeout=5)  # the slow post is in flight
        started = time.monotonic()
        status, body = slack.command("", response_url=fake_slack.response_url("x"))
        elapsed = time.monotonic() - started
        assert status == 200
        assert body == b""
        assert elapsed < 3, f"ack took {elapsed:.2f}s"
        reply = fake_slack.wait_for(lambda: fake_slack.calls_to("response_url"), timeout=5)[0].params
        assert reply["response_type"] == "ephemeral"
        title_in(reply)
        assert not fake_slack.calls_to("chat.postMessage")[0].finished, "the post was still in flight"
    finally:
        fake_slack.delays.pop("chat.postMessage")  # Slack answers the post now
        posting.join(timeout=10)
    assert not posting.is_alive()
    assert len(fake_slack.posts(thread=False)) == 1


def test_ack_does_not_wait_for_the_answer(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    fake_slack.delays["response_url"] = 10
    started = time.monotonic()
    status, body = slack.command("help", response_url=fake_slack.response_url("x"))
    elapsed = time.monotonic() - started
    assert status == 200 and body == b""
    assert elapsed < 1.5, f"ack took {elapsed:.2f}s: it waited for the response_url post"
    in_flight = fake_slack.wait_for(lambda: fake_slack.calls_to("response_url"), timeout=5)
    assert not in_flight[0].finished, "the answer was already sent: the ack may have waited for it"
    fake_slack.delays.pop("response_url")  # Slack takes the answer now
    reply = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("response_url") if c.finished])[0].params
    assert "/interview-question" in everything(reply)


def test_the_answer_runs_on_the_bots_executor_without_copying_the_request(start_bot, fake_slack, ask, monkeypatch):
    """Not a Bolt lazy listener: those deep-copy the request and its context on the request thread before the
    ack (`BoltRequest.to_copyable`), which was a third of the ack's CPU under load."""
    from slack_bolt.request.request import BoltRequest

    copies: list[str] = []
    real_copy = BoltRequest.to_copyable
    monkeypatch.setattr(BoltRequest, "to_copyable", lambda self: copies.append("copy") or real_copy(self))
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(slack, "help")
    assert "/interview-question" in everything(reply)
    assert copies == []


def test_the_edge_acknowledges_the_command_itself_and_bolt_gets_the_rest(start_bot, fake_slack, ask):
    """`/interview-question` over HTTP is acknowledged on the edge's event loop (no request thread, no Bolt
    dispatch: the ack never queues behind other work for a thread), its answer queued on the bot's
    executor; a command drillbot does not own still goes to Bolt, which acknowledges it and does nothing."""
    bot, slack = start_bot(drill_schedule=NEVER)
    edge = bot.server.listeners[0].app
    dispatched: list[str] = []
    real_dispatch = edge.app.dispatch

    def counting_dispatch(request):  # type: ignore[no-untyped-def]
        dispatched.append(str(request.body.get("command")))
        return real_dispatch(request)

    edge.app.dispatch = counting_dispatch
    reply = ask(slack, "help")
    assert "/interview-question" in everything(reply)
    assert dispatched == []
    assert bot.runtime.metrics.registry.get_sample_value(
        "drillbot_requests_total", {"type": "command", "status": "200"}) == 1

    form = urlencode({"command": "/other-command", "text": "", "user_id": "UASKER01", "channel_id": "C1",
                      "response_url": fake_slack.response_url("other"), "trigger_id": "4.5.6"}).encode()
    status, body = slack.raw(form, content_type="application/x-www-form-urlencoded")
    assert (status, body) == (200, b"")
    assert dispatched == ["/other-command"]
    assert not [c for c in fake_slack.calls_to("response_url") if "other" in str(c.path)]


def test_a_failing_answer_is_logged_with_its_traceback_and_the_bot_keeps_answering(start_bot, fake_slack, ask):
    bot, slack = start_bot(drill_schedule=NEVER)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("bot.listeners.commands")
    logger.addHandler(handler)
    real_snoozed_until = bot.runtime.service.people.snoozed_until

    def broken(user_id):  # type: ignore[no-untyped-def]
        raise RuntimeError("the database is on fire")

    bot.runtime.service.people.snoozed_until = broken
    try:
        status, body = slack.command("stats", response_url=fake_slack.response_url("x"))
        assert (status, body) == (200, b"")
        fake_slack.wait_for(lambda: [r for r in records if "answering /interview-question failed" in r.getMessage()],
                            timeout=5)
    finally:
        logger.removeHandler(handler)
        bot.runtime.service.people.snoozed_until = real_snoozed_until
    [record] = [r for r in records if "answering /interview-question failed" in r.getMessage()]
    assert record.exc_info is not None and "the database is on fire" in str(record.exc_info[1])
    assert "/interview-question" in everything(ask(slack, "help"))


# -- practice questions ---------------------------------------------------------------------------


def test_no_argument_gives_an_ephemeral_question_from_the_bank(start_bot, fake_slack, ask):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(slack, "")
    assert reply["response_type"] == "ephemeral"
    question_id = title_in(reply)
    assert TITLES[question_id] in everything(reply)
    assert not fake_slack.posts(), "a practice question is never posted to the channel"


def test_help_shows_usage(start_bot, fake_slack, ask):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(slack, "help")
    assert reply["response_type"] == "ephemeral"
    shown = everything(reply)
    assert "/interview-question" in shown
    assert "/interview-question leaderboard" in shown
    for category in CATEGORIES:
        assert category in shown
    assert not any(title in shown for title in TITLES.values()), "help is usage, not a question"


def test_filters_narrow_the_pick(start_bot, fake_slack, ask):
    _bot, slack = start_bot(drill_schedule=NEVER)
    expected = {"caching": {"cache-stampede"}, "isolation-levels": {"isolation-anomalies"}, "easy": {"idempotent-api"}}
    for word, wanted in expected.items():
        picked = {title_in(ask(slack, word)) for _ in range(10)}
        assert picked == wanted, f"/interview-question {word} gave {picked}"
    # Several words must all match: databases + hard is the isolation question; mixed case is accepted.
    picked = {title_in(ask(slack, "Databases HARD")) for _ in range(3)}
    assert picked == {"isolation-anomalies"}


def test_filters_that_match_nothing_together_say_so(start_bot, fake_slack, ask):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(slack, "caching easy")
    shown = everything(reply)
    assert reply["response_type"] == "ephemeral"
    assert "No question matches" in shown
    assert not any(title in shown for title in TITLES.values())


def test_unknown_argument_lists_categories_and_tags(start_bot, fake_slack, ask):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(slack, "kubernetes")
    assert reply["response_type"] == "ephemeral"
    shown = everything(reply)
    assert "kubernetes" in shown
    for name in (*CATEGORIES, *TAGS):
        assert f"`{name}`" in shown, f"{name} is not listed"
    assert not any(title in shown for title in TITLES.values())


def test_unknown_argument_is_echoed_escaped(start_bot, fake_slack, ask, seed_two_days):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(slack, "<!channel> <@U123> &")
    shown = everything(reply)
    assert "<!channel>" not in shown
    assert "<@U123>" not in shown
    assert "&lt;!channel&gt;" in shown
    assert "&lt;@U123&gt;" in shown
    assert "`&amp;`" in shown
    # The fallback text too (it is what notifications show).
    assert "<!" not in reply["text"] and "<@" not in reply["text"]


# -- leaderboard ----------------------------------------------------------------------------------


@pytest.fixture
def seed_two_days(start_bot: Any, make_clock: Any) -> Any:
    """`seed_two_days()`: two closed drills (UALICE answered both, UBOB only the first); returns the sender."""

    def seed() -> SlackSender:
        real_now = datetime.now(UTC)
        clock = make_clock(real_now - timedelta(days=2))
        bot, slack = start_bot(drill_schedule=NEVER, drill_answer_window="1h", clock=clock)
        service = bot.runtime.service
        answers = {0: ["UALICE", "UBOB"], 1: ["UALICE"]}
        for day, users in answers.items():
            clock.set(real_now - timedelta(days=2 - day))
            outcome = service.post_today()
            assert outcome.result == "posted", outcome
            for n, user in enumerate(users):
                slack.reply(str(outcome.ts), user=user, at=clock.moment + timedelta(minutes=1 + n), text=f"answer by {user}")
        clock.set(real_now)
        return slack

    return seed


def test_leaderboard_for_a_manager_lists_streaks_by_mention(start_bot, fake_slack, ask, seed_two_days):
    slack = seed_two_days()
    reply = ask(slack, "leaderboard", user=MANAGER)
    assert reply["response_type"] == "ephemeral"
    shown = everything(reply)
    assert "<@UALICE>" in shown and "<@UBOB>" in shown
    lines = [line for block in reply["blocks"] for line in block.get("text", {}).get("text", "").splitlines()]
    alice = next(line for line in lines if "<@UALICE>" in line)
    bob = next(line for line in lines if "<@UBOB>" in line)
    assert "current streak *2*" in alice and "longest 2" in alice and "2 answers" in alice
    assert "current streak *0*" in bob and "longest 1" in bob and "1 answers" in bob
    assert lines.index(alice) < lines.index(bob), "the longer current streak ranks first"


def test_leaderboard_for_anyone_else_is_a_polite_refusal(start_bot, fake_slack, ask, seed_two_days):
    slack = seed_two_days()
    reply = ask(slack, "leaderboard", user="UNOTMANAGER")
    assert reply["response_type"] == "ephemeral"
    shown = everything(reply)
    assert "<@" not in shown
    for user in ("UALICE", "UBOB", MANAGER, "UNOTMANAGER"):
        assert user not in shown
    assert "Sorry" in shown and "manager" in shown
