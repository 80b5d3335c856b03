"""/interview-question end to end: really signed slash-command requests against the running bot.

The bot acks with an empty 200 at once and answers through the response_url, which the fake Slack
records as method "response_url".
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from tests.conftest import MANAGER, TEST_BANK, SlackSender, reply_event
from tests.fakes.slack import FakeSlack

NEVER = "0 0 1 1 *"  # the scheduler never posts a drill by itself during a test

BANK = yaml.safe_load(TEST_BANK.read_text(encoding="utf-8"))
TITLES = {q["id"]: q["title"] for q in BANK["questions"]}
CATEGORIES = sorted({q["category"] for q in BANK["questions"]})
TAGS = sorted({t for q in BANK["questions"] for t in q["tags"]})


def ask(
    fake: FakeSlack, slack: SlackSender, text: str, *, user_id: str = "UASKER01", timeout: float = 5
) -> dict[str, Any]:
    """Send the command, check the ack, and return the reply posted to the response_url."""
    before = len(fake.calls_to("response_url"))
    status, body = slack.command(text, user_id=user_id, response_url=fake.response_url("x"))
    assert status == 200, body
    assert body == b""
    calls = fake.wait_for(lambda: fake.calls_to("response_url")[before:], timeout=timeout)
    assert len(calls) == 1, f"one command, one reply; got {len(calls)}"
    return calls[0].params


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
    fake_slack.delays["chat.postMessage"] = 2
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
    finally:
        posting.join(timeout=10)
    assert not posting.is_alive()
    assert len(fake_slack.posts(thread=False)) == 1


def test_ack_does_not_wait_for_the_answer(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    fake_slack.delays["response_url"] = 2.5
    started = time.monotonic()
    status, body = slack.command("help", response_url=fake_slack.response_url("x"))
    elapsed = time.monotonic() - started
    assert status == 200 and body == b""
    assert elapsed < 1.5, f"ack took {elapsed:.2f}s: it waited for the response_url post"
    reply = fake_slack.wait_for(lambda: fake_slack.calls_to("response_url"), timeout=5)[0].params
    assert "/interview-question" in everything(reply)


def test_the_answer_runs_on_the_bots_executor_without_copying_the_request(start_bot, fake_slack, monkeypatch):
    """Not a Bolt lazy listener: those deep-copy the request and its context on the request thread before the
    ack (`BoltRequest.to_copyable`), which was a third of the ack's CPU under load."""
    from slack_bolt.request.request import BoltRequest

    copies: list[str] = []
    real_copy = BoltRequest.to_copyable
    monkeypatch.setattr(BoltRequest, "to_copyable", lambda self: copies.append("copy") or real_copy(self))
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(fake_slack, slack, "help")
    assert "/interview-question" in everything(reply)
    assert copies == []


def test_a_failing_answer_is_logged_with_its_traceback_and_the_bot_keeps_answering(start_bot, fake_slack):
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
    assert "/interview-question" in everything(ask(fake_slack, slack, "help"))


# -- practice questions ---------------------------------------------------------------------------


def test_no_argument_gives_an_ephemeral_question_from_the_bank(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(fake_slack, slack, "")
    assert reply["response_type"] == "ephemeral"
    question_id = title_in(reply)
    assert TITLES[question_id] in everything(reply)
    assert not fake_slack.posts(), "a practice question is never posted to the channel"


def test_help_shows_usage(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(fake_slack, slack, "help")
    assert reply["response_type"] == "ephemeral"
    shown = everything(reply)
    assert "/interview-question" in shown
    assert "/interview-question leaderboard" in shown
    for category in CATEGORIES:
        assert category in shown
    assert not any(title in shown for title in TITLES.values()), "help is usage, not a question"


def test_filters_narrow_the_pick(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    expected = {"caching": {"cache-stampede"}, "isolation-levels": {"isolation-anomalies"}, "easy": {"idempotent-api"}}
    for word, wanted in expected.items():
        picked = {title_in(ask(fake_slack, slack, word)) for _ in range(10)}
        assert picked == wanted, f"/interview-question {word} gave {picked}"
    # Several words must all match: databases + hard is the isolation question; mixed case is accepted.
    picked = {title_in(ask(fake_slack, slack, "Databases HARD")) for _ in range(3)}
    assert picked == {"isolation-anomalies"}


def test_filters_that_match_nothing_together_say_so(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(fake_slack, slack, "caching easy")
    shown = everything(reply)
    assert reply["response_type"] == "ephemeral"
    assert "No question matches" in shown
    assert not any(title in shown for title in TITLES.values())


def test_unknown_argument_lists_categories_and_tags(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(fake_slack, slack, "kubernetes")
    assert reply["response_type"] == "ephemeral"
    shown = everything(reply)
    assert "kubernetes" in shown
    for name in (*CATEGORIES, *TAGS):
        assert f"`{name}`" in shown, f"{name} is not listed"
    assert not any(title in shown for title in TITLES.values())


def test_unknown_argument_is_echoed_escaped(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    reply = ask(fake_slack, slack, "<!channel> <@U123> &")
    shown = everything(reply)
    assert "<!channel>" not in shown
    assert "<@U123>" not in shown
    assert "&lt;!channel&gt;" in shown
    assert "&lt;@U123&gt;" in shown
    assert "`&amp;`" in shown
    # The fallback text too (it is what notifications show).
    assert "<!" not in reply["text"] and "<@" not in reply["text"]


# -- leaderboard ----------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def seed_two_days(start_bot: Callable[..., Any], fake_slack: FakeSlack) -> SlackSender:
    """Two closed drills: UALICE answered both, UBOB only the first."""
    real_now = datetime.now(UTC)
    clock = Clock(real_now - timedelta(days=2))
    bot, slack = start_bot(drill_schedule=NEVER, drill_answer_window="1h", clock=clock)
    service = bot.runtime.service
    answers = {0: ["UALICE", "UBOB"], 1: ["UALICE"]}
    for day, users in answers.items():
        clock.now = real_now - timedelta(days=2 - day)
        outcome = service.post_today()
        assert outcome.result == "posted", outcome
        for n, user in enumerate(users):
            ts = (clock.now + timedelta(minutes=1 + n)).timestamp()
            status, _ = slack.event(reply_event(str(outcome.ts), user=user, ts=ts, text=f"answer by {user}"))
            assert status == 200
    clock.now = real_now
    return slack


def test_leaderboard_for_a_manager_lists_streaks_by_mention(start_bot, fake_slack):
    slack = seed_two_days(start_bot, fake_slack)
    reply = ask(fake_slack, slack, "leaderboard", user_id=MANAGER)
    assert reply["response_type"] == "ephemeral"
    shown = everything(reply)
    assert "<@UALICE>" in shown and "<@UBOB>" in shown
    lines = [line for block in reply["blocks"] for line in block.get("text", {}).get("text", "").splitlines()]
    alice = next(line for line in lines if "<@UALICE>" in line)
    bob = next(line for line in lines if "<@UBOB>" in line)
    assert "current streak *2*" in alice and "longest 2" in alice and "2 answers" in alice
    assert "current streak *0*" in bob and "longest 1" in bob and "1 answers" in bob
    assert lines.index(alice) < lines.index(bob), "the longer current streak ranks first"


def test_leaderboard_for_anyone_else_is_a_polite_refusal(start_bot, fake_slack):
    slack = seed_two_days(start_bot, fake_slack)
    reply = ask(fake_slack, slack, "leaderboard", user_id="UNOTMANAGER")
    assert reply["response_type"] == "ephemeral"
    shown = everything(reply)
    assert "<@" not in shown
    for user in ("UALICE", "UBOB", MANAGER, "UNOTMANAGER"):
        assert user not in shown
    assert "Sorry" in shown and "manager" in shown
