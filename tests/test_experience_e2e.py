"""The drill experience end to end: sealed answers in a modal, the live answer count, the reveal with
self-ratings, the one quiet reminder, the App Home tab and practice buttons.

Everything goes through the running bot over HTTP, signed like Slack signs: events as JSON, and
interactive payloads (buttons, modal submissions) form-encoded as `payload=<json>`. Time is injected: a
clock that starts at a chosen moment and runs at real speed, and that a test can move forward, so deadlines,
the reminder and the live-count throttle are reached without waiting for them; `wait_ticks(bot)` says
when the scheduler has looked at the new time.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import yaml

from bot import blocks
from bot.domain.rotation import next_question
from bot.drills import PostResult
from bot.runtime import build_runtime
from storage import repo
from tests.fakes.events import SlackSender
from tests.fakes.slack import Failure, FakeSlack
from tests.fakes.workspace import CHANNEL, MANAGER, TEST_BANK

BANK = {q["id"]: q for q in yaml.safe_load(TEST_BANK.read_text(encoding="utf-8"))["questions"]}
IDS = list(BANK)
# A day on which the channel's first drill is cache-stampede (the bank's question with a follow-up).
DAY1 = next(
    date(2024, 3, 4) + timedelta(days=n)
    for n in range(30)
    if next_question(IDS, [], channel=CHANNEL, day=date(2024, 3, 4) + timedelta(days=n)) == "cache-stampede"
)
START = datetime.combine(DAY1, datetime.min.time(), tzinfo=UTC).replace(hour=10)
HOSTILE = "<!channel> <@U999> & <b>"
HOSTILE_ESCAPED = "&lt;!channel&gt; &lt;@U999&gt; &amp; &lt;b&gt;"


@pytest.fixture
def clock(make_clock: Any) -> Any:
    """Starts at START and runs at real speed; tests move it forward."""
    return make_clock(START, running=True)


# -- what Slack sends ----------------------------------------------------------------------------------


def _now() -> str:
    return f"{datetime.now(UTC).timestamp():.6f}"


def _base(kind: str, user: str) -> dict[str, Any]:
    return {
        "type": kind,
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0FAKE",
        "token": "legacy",
        "trigger_id": f"{_now()[:10]}.123.{user}",
    }


def _action(action_id: str, value: str, block_id: str) -> dict[str, Any]:
    return {
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "type": "button",
        "text": {"type": "plain_text", "text": action_id},
        "action_ts": _now(),
    }


def click_message(
    slack: SlackSender,
    fake: FakeSlack,
    *,
    user: str,
    action_id: str,
    value: str,
    message_ts: str = "1700000000.000100",
    block_id: str = "b",
    reply_to: str = "click",
    ephemeral: bool = False,
) -> str:
    """A button on a message (in the channel, or an ephemeral reply); returns its response_url."""
    url = fake.response_url(reply_to)
    payload = _base("block_actions", user)
    payload.update(
        container={"type": "message", "message_ts": message_ts, "channel_id": CHANNEL, "is_ephemeral": ephemeral},
        channel={"id": CHANNEL, "name": "drills"},
        message={"type": "message", "ts": message_ts, "text": "", "user": "UBOTDRILL"},
        response_url=url,
        actions=[_action(action_id, value, block_id)],
    )
    status, body = slack.payload(payload)
    assert status == 200, (status, body)
    return url


def click_in_view(
    slack: SlackSender,
    *,
    user: str,
    action_id: str,
    value: str,
    view_id: str,
    view_type: str = "modal",
    callback_id: str = blocks.PRACTICE_VIEW,
    block_id: str = "b",
) -> None:
    """A button in a modal or on the Home tab: a `view` instead of a message, no response_url."""
    payload = _base("block_actions", user)
    view: dict[str, Any] = {"id": view_id, "hash": f"{view_id}-hash", "type": view_type, "blocks": []}
    if view_type == "modal":
        view.update(callback_id=callback_id, private_metadata="", state={"values": {}})
    payload.update(
        container={"type": "view", "view_id": view_id}, view=view, actions=[_action(action_id, value, block_id)]
    )
    status, body = slack.payload(payload)
    assert status == 200, (status, body)


def submit_answer(slack: SlackSender, *, user: str, drill_id: int | str, text: str | None) -> tuple[int, bytes]:
    payload = _base("view_submission", user)
    payload["view"] = {
        "id": f"VANSWER{user}",
        "hash": "h",
        "type": "modal",
        "callback_id": blocks.ANSWER_VIEW,
        "private_metadata": str(drill_id),
        "state": {"values": {blocks.ANSWER_BLOCK: {blocks.ANSWER_INPUT: {"type": "plain_text_input", "value": text}}}},
    }
    return slack.payload(payload)


def submitted(response: tuple[int, bytes]) -> None:
    """Slack closes the modal on a 200 with an empty body."""
    status, body = response
    assert status == 200, (status, body)
    assert body == b"", body


def refused(response: tuple[int, bytes]) -> str:
    status, body = response
    assert status == 200, (status, body)
    answer = json.loads(body)
    assert answer["response_action"] == "errors", answer
    return str(answer["errors"][blocks.ANSWER_BLOCK])


# -- what the fake Slack saw ------------------------------------------------------------------------------


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def view_of(call_params: dict[str, Any]) -> dict[str, Any]:
    view = call_params["view"]
    return json.loads(view) if isinstance(view, str) else view


def replies_to(fake: FakeSlack, name: str) -> list[dict[str, Any]]:
    """What the bot posted to the response_url called `name` (waits for the first)."""
    return fake.wait_for(lambda: fake.responses(name), timeout=5)  # type: ignore[no-any-return]


def count_updates(fake: FakeSlack, drill_ts: str) -> list[Any]:
    """chat.update calls of the open drill message that show its live count."""
    return [
        c
        for c in fake.calls_to("chat.update")
        if c.params.get("ts") == drill_ts and "answered so far" in dump(c.params.get("blocks"))
    ]


def thread_posts(fake: FakeSlack, drill_ts: str) -> list[dict[str, Any]]:
    """chat.postMessage params of the bot's posts in the drill's thread."""
    return [c.params for c in fake.posts(thread=True) if c.params.get("thread_ts") == drill_ts]


def is_reveal(params: dict[str, Any]) -> bool:
    return (params.get("metadata") or {}).get("event_type") == "drillbot_reveal"


def reminders(fake: FakeSlack, drill_ts: str) -> list[dict[str, Any]]:
    return [p for p in thread_posts(fake, drill_ts) if "left to answer" in dump(p)]


def action_ids(view_or_message: Any) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "action_id" in node:
                found.append(node["action_id"])
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(view_or_message)
    return found


def button(message_blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any]:
    for block in message_blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return dict(element, block_id=block.get("block_id"))
    raise AssertionError(f"no button {action_id!r} in {dump(message_blocks)}")


def titles_in(value: Any) -> list[str]:
    shown = dump(value)
    return [qid for qid, q in BANK.items() if q["title"] in shown]


# -- setup ---------------------------------------------------------------------------------------------------


def post_drill(bot: Any, fake: FakeSlack) -> tuple[int, str, dict[str, Any]]:
    """Post today's drill through the service; returns (drill id, ts, the posted params)."""
    outcome = bot.runtime.service.post_today()
    assert outcome.result == PostResult.POSTED, outcome
    post = next(
        c.params
        for c in fake.posts(thread=False)
        if c.params.get("metadata", {}).get("event_payload", {}).get("drill_id") == outcome.drill_id
    )
    return int(outcome.drill_id), str(outcome.ts), post


def reveal_of(fake: FakeSlack, drill_ts: str, timeout: float = 10) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((m for m in fake.thread_replies(CHANNEL, drill_ts) if is_reveal(m)), None)

    return fake.wait_for(found, timeout=timeout)  # type: ignore[no-any-return]


def reveal_params(fake: FakeSlack, drill_ts: str) -> dict[str, Any]:
    return next(p for p in thread_posts(fake, drill_ts) if is_reveal(p))


def sealed_posts(fake: FakeSlack, drill_ts: str) -> list[dict[str, Any]]:
    return [m for m in fake.thread_replies(CHANNEL, drill_ts) if "Sealed answers" in str(m.get("text"))]


def visible_in_slack(fake: FakeSlack) -> str:
    """Everything the bot made visible to anyone but the author: posts, updates, ephemeral replies, Home tabs."""
    public = ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url", "views.publish")
    with fake.lock:
        return dump([c.params for c in fake.calls if c.method in public])


def guidance(qid: str) -> str:
    return str(BANK[qid]["guidance"])


# == 1. sealed drills ========================================================================================


def test_sealed_answers_are_taken_in_a_modal_and_revealed_with_the_guidance(start_bot, fake_slack, clock, db):
    bot, slack = start_bot(drill_schedule="off", drill_answer_window="2h", drill_sealed=True, clock=clock)
    drill_id, drill_ts, post = post_drill(bot, fake_slack)
    answer = button(post["blocks"], blocks.ANSWER_ACTION)
    assert answer["text"]["text"] == "Answer"
    assert answer["value"] == str(drill_id)

    # The button opens a modal whose first input takes the answer.
    click_message(
        slack,
        fake_slack,
        user="UALICE",
        action_id=blocks.ANSWER_ACTION,
        value=answer["value"],
        message_ts=drill_ts,
        block_id=answer["block_id"],
        reply_to="open-alice",
    )
    opened = fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"), timeout=5)
    assert len(opened) == 1
    assert opened[0].params["trigger_id"].endswith(".UALICE")
    modal = view_of(opened[0].params)
    assert modal["type"] == "modal" and modal["callback_id"] == blocks.ANSWER_VIEW
    assert modal["private_metadata"] == str(drill_id)
    first_input = next(b for b in modal["blocks"] if b["type"] == "input")
    assert first_input["block_id"] == blocks.ANSWER_BLOCK
    assert first_input["element"]["type"] == "plain_text_input"
    assert first_input["element"]["action_id"] == blocks.ANSWER_INPUT
    assert "initial_value" not in first_input["element"]
    assert BANK[db.drill(bot, drill_id).question_id]["title"] in dump(modal)

    # An empty answer keeps the modal open with an error on the input.
    assert refused(submit_answer(slack, user="UALICE", drill_id=drill_id, text="   \n "))
    assert refused(submit_answer(slack, user="UALICE", drill_id=drill_id, text=None))

    # Stored; resubmitting replaces (one answer per person).
    submitted(submit_answer(slack, user="UALICE", drill_id=drill_id, text="DRAFT-ALICE first thoughts"))
    submitted(submit_answer(slack, user="UALICE", drill_id=drill_id, text=f"FINAL-ALICE {HOSTILE}"))
    submitted(submit_answer(slack, user="UBOB", drill_id=drill_id, text="SEALED-BOB single flight"))
    # Reopening the modal shows the person their current answer (and only theirs).
    click_message(
        slack,
        fake_slack,
        user="UALICE",
        action_id=blocks.ANSWER_ACTION,
        value=answer["value"],
        message_ts=drill_ts,
        block_id=answer["block_id"],
        reply_to="reopen-alice",
    )
    reopened = fake_slack.wait_for(lambda: fake_slack.calls_to("views.open")[1:], timeout=5)
    element = next(b for b in view_of(reopened[0].params)["blocks"] if b["type"] == "input")["element"]
    assert element["initial_value"] == f"FINAL-ALICE {HOSTILE}"
    assert "SEALED-BOB" not in dump(reopened[0].params)

    # A thread reply still counts.
    slack.reply(drill_ts, user="UCAROL", at=clock(), text="CAROL-THREAD public answer")
    clock.advance(seconds=6)  # past the live-count throttle
    three = fake_slack.wait_for(
        lambda: [c for c in count_updates(fake_slack, drill_ts) if "3 answered so far" in dump(c.params["blocks"])],
        timeout=5,
    )
    assert button(three[0].params["blocks"], blocks.ANSWER_ACTION)["value"] == str(drill_id), "the button stays"

    # Before the reveal nothing of the sealed answers is visible anywhere in Slack.
    shown = visible_in_slack(fake_slack)
    for secret in ("DRAFT-ALICE", "FINAL-ALICE", "SEALED-BOB", "U999", "&lt;!channel&gt;"):
        assert secret not in shown, f"{secret!r} leaked before the reveal"
    assert [m["text"] for m in fake_slack.thread_replies(CHANNEL, drill_ts)] == []

    # The reveal: the guidance, then the sealed answers, attributed and escaped.
    clock.advance(hours=2)
    reveal = reveal_of(fake_slack, drill_ts)
    assert guidance(db.drill(bot, drill_id).question_id) in dump(reveal["blocks"])
    assert "3 answered" in dump(reveal["blocks"])
    sealed = fake_slack.wait_for(lambda: sealed_posts(fake_slack, drill_ts), timeout=5)
    assert len(sealed) == 1
    thread = fake_slack.thread_replies(CHANNEL, drill_ts)
    assert thread.index(reveal) < thread.index(sealed[0]), "the sealed answers follow the guidance"
    text = dump(sealed[0]["blocks"])
    assert "*Sealed answers* (2)" in text
    assert text.count("<@UALICE>") == 1 and text.count("<@UBOB>") == 1
    assert f"FINAL-ALICE {HOSTILE_ESCAPED}" in text
    assert "SEALED-BOB single flight" in text
    assert "DRAFT-ALICE" not in text, "a resubmission replaces the earlier answer"
    for live in ("<!channel>", "<@U999>", "<b>", " & "):
        assert live not in dump(sealed[0]), f"{live!r} reached Slack unescaped"
    assert "CAROL-THREAD" not in text  # already public in the thread; not repeated as a sealed answer
    db.wait_closed(bot, drill_id)
    closed = next(m for m in fake_slack.messages[CHANNEL] if m["ts"] == drill_ts)
    assert "Closed" in dump(closed["blocks"]) and blocks.ANSWER_ACTION not in action_ids(closed["blocks"])

    # After the deadline: too late, and the stored answer does not change.
    assert "Too late" in refused(submit_answer(slack, user="UALICE", drill_id=drill_id, text="LATE-ALICE"))
    assert "Too late" in refused(submit_answer(slack, user="UDAVE", drill_id=drill_id, text="LATE-DAVE"))
    with bot.runtime.db.transaction() as session:
        assert repo.modal_answers(session, drill_id) == [
            ("UALICE", f"FINAL-ALICE {HOSTILE}"),
            ("UBOB", "SEALED-BOB single flight"),
        ]
    # The Answer button on a closed drill says so, privately, instead of opening a modal.
    click_message(
        slack,
        fake_slack,
        user="UDAVE",
        action_id=blocks.ANSWER_ACTION,
        value=answer["value"],
        message_ts=drill_ts,
        block_id=answer["block_id"],
        reply_to="closed-dave",
    )
    closed_reply = replies_to(fake_slack, "closed-dave")[0]
    assert closed_reply["response_type"] == "ephemeral" and "closed" in closed_reply["text"]
    assert len(fake_slack.calls_to("views.open")) == 2
    assert len(sealed_posts(fake_slack, drill_ts)) == 1
    assert "LATE-" not in visible_in_slack(fake_slack)


def test_a_submission_after_the_deadline_but_before_the_reveal_is_too_late(start_bot, fake_slack, clock, db):
    bot, slack = start_bot(
        drill_schedule="off", drill_answer_window="2h", drill_sealed=True, clock=clock, drill_tick_seconds=30
    )  # the scheduler does not reveal during this test
    drill_id, drill_ts, _ = post_drill(bot, fake_slack)
    submitted(submit_answer(slack, user="UALICE", drill_id=drill_id, text="ON-TIME"))
    assert bot.scheduler is not None
    bot.scheduler.pause()  # moving the clock wakes the scheduler: here nothing may reveal the drill yet
    clock.advance(hours=2, seconds=1)
    assert db.drill(bot, drill_id).status == "open"
    assert "Too late" in refused(submit_answer(slack, user="UALICE", drill_id=drill_id, text="AFTER-DEADLINE"))
    assert "Too late" in refused(submit_answer(slack, user="UBOB", drill_id=drill_id, text="AFTER-DEADLINE"))
    with bot.runtime.db.transaction() as session:
        assert repo.modal_answers(session, drill_id) == [("UALICE", "ON-TIME")]
    # A form for a drill that does not exist, or with a tampered id, is refused too.
    assert refused(submit_answer(slack, user="UALICE", drill_id=drill_id + 1000, text="x"))
    assert refused(submit_answer(slack, user="UALICE", drill_id="../1", text="x"))


# == 2. the live drill message ===============================================================================


def test_the_drill_message_shows_a_live_throttled_answer_count_and_the_deadline(
    start_bot, fake_slack, clock, db, wait_ticks
):
    bot, slack = start_bot(drill_schedule="off", drill_answer_window="2h", clock=clock)
    posted_at = clock()
    drill_id, drill_ts, post = post_drill(bot, fake_slack)
    shown = dump(post["blocks"])
    date_tokens = re.findall(r"<!date\^(\d+)\^([^|>]*)\|[^>]*>", shown)
    assert date_tokens, f"no Slack date formatting in {shown}"
    stamp, template = date_tokens[0]
    assert "{ago}" in template
    assert abs(int(stamp) - (posted_at + timedelta(hours=2)).timestamp()) < 5
    assert "0 answered so far" in shown

    slack.reply(drill_ts, user="UALICE", at=clock())
    slack.reply(drill_ts, user="UBOB", at=clock())
    clock.advance(seconds=6)
    two = fake_slack.wait_for(
        lambda: [c for c in count_updates(fake_slack, drill_ts) if "2 answered so far" in dump(c.params["blocks"])],
        timeout=5,
    )
    update = dump(two[0].params["blocks"])
    assert BANK[db.drill(bot, drill_id).question_id]["title"] in update, "the update keeps the question"
    assert stamp in update and "{ago}" in update, "the update keeps the deadline"

    # A burst: 20 answers over about 2 s give at most two updates.
    clock.advance(seconds=6)
    before = len(count_updates(fake_slack, drill_ts))
    for n in range(20):  # on the injected clock: 0.1 s apart
        slack.reply(drill_ts, user=f"UBURST{n:02d}", at=clock())
        clock.advance(seconds=0.1)
    wait_ticks(bot)  # a couple of ticks after the burst
    during = count_updates(fake_slack, drill_ts)[before:]
    assert 1 <= len(during) <= 2, f"{len(during)} count updates during the burst"
    # Once the throttle interval has passed, the message catches up with the final count.
    clock.advance(seconds=6)
    fake_slack.wait_for(
        lambda: [c for c in count_updates(fake_slack, drill_ts) if "22 answered so far" in dump(c.params["blocks"])],
        timeout=5,
    )
    message = next(m for m in fake_slack.messages[CHANNEL] if m["ts"] == drill_ts)
    assert "22 answered so far" in dump(message["blocks"])
    # Nothing changed: no more updates.
    settled = len(count_updates(fake_slack, drill_ts))
    clock.advance(seconds=6)
    wait_ticks(bot)
    assert len(count_updates(fake_slack, drill_ts)) == settled


# == 3. the reveal and self-ratings ==========================================================================


def test_the_reveal_is_worth_reading_and_answerers_can_rate_themselves(
    start_bot, fake_slack, clock, db, wait_ticks, home_of
):
        # DRILL_REMINDER empty: no nudge at all (checked on the way to the reveal).
    bot, slack = start_bot(
        drill_schedule="off", drill_answer_window="2h", drill_reminder="", clock=clock, drill_tick_seconds=0.1
    )
    assert bot.runtime.settings.drill_reminder is None
    drill_id, drill_ts, _ = post_drill(bot, fake_slack)
    assert db.drill(bot, drill_id).question_id == "cache-stampede"
    question = BANK["cache-stampede"]
    slack.reply(drill_ts, user="UALICE", at=clock())
    slack.reply(drill_ts, user="UBOB", at=clock())
    for minutes in (60, 59):  # one hour before the deadline, then one minute before
        clock.advance(minutes=minutes)
        wait_ticks(bot)
    assert thread_posts(fake_slack, drill_ts) == [], "no reminder when DRILL_REMINDER is empty"
    clock.advance(minutes=1, seconds=1)
    reveal = reveal_of(fake_slack, drill_ts)
    shown = dump(reveal["blocks"])
    assert question["title"] in shown
    assert question["guidance"] in shown
    assert "Key points" in shown and all(point in shown for point in question["key_points"])
    assert "Follow-up questions" in shown and question["follow_ups"][0] in shown
    assert "2 answered" in shown
    # The checklist DM replaces the rating buttons; the reveal says it comes (issue 15).
    assert "private checklist in a DM" in shown
    assert not any(b.get("block_id") == "rate" for b in reveal["blocks"])
    db.wait_closed(bot, drill_id)
    closed = next(m for m in fake_slack.messages[CHANNEL] if m["ts"] == drill_ts)
    assert "Closed" in dump(closed["blocks"]) and "2 answered" in dump(closed["blocks"])
    assert thread_posts(fake_slack, drill_ts) == [reveal_params(fake_slack, drill_ts)], "only the guidance"

    # A reveal posted before the checklist existed still has its rating buttons: they keep working.
    def old_button(key: str) -> dict[str, Any]:
        return {"action_id": f"{blocks.RATE_ACTION_PREFIX}{key}", "value": str(drill_id), "block_id": "rate"}

    nailed = old_button("nailed")
    click_message(
        slack,
        fake_slack,
        user="UALICE",
        action_id=nailed["action_id"],
        value=nailed["value"],
        message_ts=reveal["ts"],
        block_id=nailed["block_id"],
        reply_to="rate-alice",
    )
    confirmation = replies_to(fake_slack, "rate-alice")[0]
    assert confirmation["response_type"] == "ephemeral"
    assert confirmation.get("replace_original") is False, "the reveal stays as it is for everyone"
    assert "Nailed it" in confirmation["text"]

    click_message(
        slack,
        fake_slack,
        user="UCAROL",
        action_id=nailed["action_id"],
        value=nailed["value"],
        message_ts=reveal["ts"],
        block_id=nailed["block_id"],
        reply_to="rate-carol",
    )
    refusal = replies_to(fake_slack, "rate-carol")[0]
    assert refusal["response_type"] == "ephemeral"
    assert refusal["text"].startswith("Only people who answered")

    home = dump(home_of(slack, "UALICE"))
    assert "*caching*" in home and "1 nailed" in home
    carol = dump(home_of(slack, "UCAROL"))
    assert "nailed," not in carol, "a refused rating is not stored"

    # Rating again replaces the earlier rating.
    missed = old_button("missed")
    click_message(
        slack,
        fake_slack,
        user="UALICE",
        action_id=missed["action_id"],
        value=missed["value"],
        message_ts=reveal["ts"],
        block_id=missed["block_id"],
        reply_to="rerate-alice",
    )
    assert "Missed" in replies_to(fake_slack, "rerate-alice")[0]["text"]
    home = dump(home_of(slack, "UALICE"))
    assert "0 nailed, 0 partly, 1 missed" in home


# == 4. one quiet nudge =======================================================================================


def test_one_quiet_reminder_before_the_deadline(start_bot, fake_slack, clock, db, wait_ticks):
    bot, slack = start_bot(
        drill_schedule="off", drill_answer_window="2h", drill_reminder="1h", clock=clock, drill_tick_seconds=0.1
    )
    drill_id, drill_ts, _ = post_drill(bot, fake_slack)
    slack.reply(drill_ts, user="UALICE", at=clock())
    slack.reply(drill_ts, user="UBOB", at=clock())
    wait_ticks(bot)
    assert reminders(fake_slack, drill_ts) == [], "two hours before the deadline is too early"

    clock.advance(hours=1)  # one hour before the deadline
    nudge = fake_slack.wait_for(lambda: reminders(fake_slack, drill_ts), timeout=5)
    assert len(nudge) == 1
    text = dump({"text": nudge[0].get("text"), "blocks": nudge[0].get("blocks")})
    assert "60 minutes left" in text
    assert "2 answered" in text
    assert "<@" not in text and "<!" not in text
    assert not nudge[0].get("reply_broadcast")

    for minutes in (30, 29):  # later ticks, still before the deadline
        clock.advance(minutes=minutes)
        wait_ticks(bot)
    assert len(reminders(fake_slack, drill_ts)) == 1
    clock.advance(minutes=2)
    reveal_of(fake_slack, drill_ts)
    db.wait_closed(bot, drill_id)
    wait_ticks(bot)
    assert len(reminders(fake_slack, drill_ts)) == 1
    assert len(thread_posts(fake_slack, drill_ts)) == 2, "the thread holds the nudge and the guidance"


# == 5. App Home ===============================================================================================


def seed_history(start_bot: Any, fake: FakeSlack, clock: Any, db: Any) -> dict[str, Any]:
    """Day 1 (revealed): UME, UOTHER1 and UOTHER2 answered; UME rated it nailed, UOTHER1 missed.
    Day 2 (still open): only UOTHER1 answered."""
    bot, slack = start_bot(drill_schedule="off", drill_answer_window="2h", clock=clock)
    day1, ts1, _ = post_drill(bot, fake)
    for user in ("UME", "UOTHER1", "UOTHER2"):
        slack.reply(ts1, user=user, at=clock(), text=f"{user}-ANSWER-ONE")
    clock.advance(hours=2, seconds=1)
    reveal = reveal_of(fake, ts1)
    db.wait_closed(bot, day1)
    for user, rating in (("UME", "nailed"), ("UOTHER1", "missed")):
        # Self-ratings stored through a reveal of before the checklist (its buttons keep working).
        rate = {"action_id": f"{blocks.RATE_ACTION_PREFIX}{rating}", "value": str(day1), "block_id": "rate"}
        click_message(
            slack,
            fake,
            user=user,
            action_id=rate["action_id"],
            value=rate["value"],
            message_ts=reveal["ts"],
            block_id=rate["block_id"],
            reply_to=f"seed-rate-{user}",
        )
        assert replies_to(fake, f"seed-rate-{user}")[0]["text"].startswith("Saved")
    clock.advance(days=1)
    day2, ts2, _ = post_drill(bot, fake)
    slack.reply(ts2, user="UOTHER1", at=clock(), text="UOTHER1-ANSWER-TWO")
    q1, q2 = db.drill(bot, day1).question_id, db.drill(bot, day2).question_id
    assert q1 != q2
    return {
        "bot": bot,
        "slack": slack,
        "clock": clock,
        "q1": q1,
        "q2": q2,
        "day1": DAY1,
        "day2": DAY1 + timedelta(days=1),
    }


def test_home_tab_and_stats_show_a_member_only_their_own_practice_and_a_manager_the_team(
    start_bot, fake_slack, ask, home_of, clock, db
):
    seeded = seed_history(start_bot, fake_slack, clock, db)
    slack = seeded["slack"]
    home = home_of(slack, "UME")
    publish = [c for c in fake_slack.calls_to("views.publish") if c.params.get("user_id") == "UME"]
    assert publish and home["type"] == "home"
    shown = dump(home)
    assert "Current streak: 1" in shown
    assert "Answers: 1" in shown
    assert guidance(seeded["q1"]) in shown, "a revealed drill's guidance is on the Home tab"
    assert guidance(seeded["q2"]) not in shown, "an open drill's guidance would spoil it"
    category = BANK[seeded["q1"]]["category"]
    assert f"*{category}*: strong (1 nailed, 0 partly, 0 missed)" in shown
    practice = button(home["blocks"], blocks.HOME_PRACTICE)
    assert practice["text"]["text"] == "Practice a question"
    # Privacy: nobody else's id, mention, answer or rating.
    for other in ("UOTHER1", "UOTHER2", MANAGER):
        assert other not in shown
    assert "<@" not in shown
    assert "ANSWER-ONE" not in shown and "ANSWER-TWO" not in shown
    assert "missed)" in shown and "1 missed" not in shown
    assert "Manager view" not in shown and "leaderboard" not in shown.lower()

    # `/interview-question stats`: the same rule, only the caller's own numbers.
    mine = ask(slack, "stats", user="UME")
    assert mine["response_type"] == "ephemeral"
    shown = dump({"text": mine.get("text"), "blocks": mine.get("blocks")})
    assert "Current streak: 1" in shown and "Answers: 1" in shown
    assert "1 nailed, 0 partly, 0 missed" in shown
    for other in ("UOTHER1", "UOTHER2", MANAGER, "<@"):
        assert other not in shown
    assert "Answers: 2" not in shown and "1 missed" not in shown
    theirs = ask(slack, "stats", user="UOTHER1")
    shown = dump({"text": theirs.get("text"), "blocks": theirs.get("blocks")})
    assert "Current streak: 2" in shown and "Answers: 2" in shown
    assert "0 nailed, 0 partly, 1 missed" in shown and "UME" not in shown

    # A manager's Home adds the team: the leaderboard and the participation per drill.
    home = home_of(slack, MANAGER)
    shown = dump(home)
    assert "Manager view" in shown
    for user in ("UME", "UOTHER1", "UOTHER2"):
        assert f"<@{user}>" in shown
    assert "Participation per drill" in shown
    assert f"{seeded['day1'].isoformat()}: 3 answered" in shown
    assert f"{seeded['day2'].isoformat()}: 1 answered" in shown
    lines = [line for block in home["blocks"] for line in (block.get("text") or {}).get("text", "").splitlines()]
    top = next(line for line in lines if "<@UOTHER1>" in line)
    assert top.startswith("1. ") and "current 2" in top, "UOTHER1 answered both drills"
    assert guidance(seeded["q2"]) not in shown, "not even a manager sees an open drill's guidance"
    assert "ANSWER-ONE" not in shown and "ANSWER-TWO" not in shown
    assert "Current streak: 0" in shown  # the manager's own numbers


# == 6. practice ================================================================================================


def test_practice_buttons_show_guidance_and_offer_unseen_questions_first(start_bot, fake_slack, clock, ask):
    _bot, slack = start_bot(drill_schedule="off", clock=clock)
    first = ask(slack, "", user="UPRACTICE")
    assert first["response_type"] == "ephemeral"
    [qid] = titles_in(first["blocks"])
    show = button(first["blocks"], blocks.PRACTICE_GUIDANCE)
    another = button(first["blocks"], blocks.PRACTICE_ANOTHER)
    assert show["text"]["text"] == "Show guidance" and another["text"]["text"] == "Another one"
    assert guidance(qid) not in dump(first)

    click_message(
        slack,
        fake_slack,
        user="UPRACTICE",
        action_id=show["action_id"],
        value=show["value"],
        block_id=show["block_id"],
        ephemeral=True,
        reply_to="show",
    )
    shown = replies_to(fake_slack, "show")[0]
    assert shown["replace_original"] is True
    assert titles_in(shown["blocks"]) == [qid]
    assert guidance(qid) in dump(shown["blocks"])
    assert blocks.PRACTICE_GUIDANCE not in action_ids(shown["blocks"])
    assert blocks.PRACTICE_ANOTHER in action_ids(shown["blocks"])

    picked = []
    for n in range(3):
        click_message(
            slack,
            fake_slack,
            user="UPRACTICE",
            action_id=another["action_id"],
            value=another.get("value", ""),  # no filters: no value (slack_sdk leaves "" out)
            block_id=another["block_id"],
            ephemeral=True,
            reply_to=f"another-{n}",
        )
        card = replies_to(fake_slack, f"another-{n}")[0]
        assert card["replace_original"] is True
        [picked_id] = titles_in(card["blocks"])
        picked.append(picked_id)
    assert len(set(picked)) == 3, f"three clicks gave {picked}"
    assert {qid, *picked[:2]} == set(IDS), "questions not seen yet come first"
    assert picked[2] == qid, "then the one seen longest ago"
    assert not fake_slack.posts(), "practice never posts to the channel"


def test_another_one_keeps_the_filters_and_categories_lists_them(start_bot, fake_slack, clock, ask):
    _bot, slack = start_bot(drill_schedule="off", clock=clock)
    first = ask(slack, "Caching", user="UCACHE")
    assert titles_in(first["blocks"]) == ["cache-stampede"]
    another = button(first["blocks"], blocks.PRACTICE_ANOTHER)
    show = button(first["blocks"], blocks.PRACTICE_GUIDANCE)
    assert another["value"] == "caching" and show["value"] == "cache-stampede|caching"
    for n in range(4):
        click_message(
            slack,
            fake_slack,
            user="UCACHE",
            action_id=another["action_id"],
            value=another.get("value", ""),  # no filters: no value (slack_sdk leaves "" out)
            block_id=another["block_id"],
            ephemeral=True,
            reply_to=f"more-{n}",
        )
        card = replies_to(fake_slack, f"more-{n}")[0]
        assert titles_in(card["blocks"]) == ["cache-stampede"], f"click {n} left the caching filter"
        assert button(card["blocks"], blocks.PRACTICE_ANOTHER)["value"] == "caching"
    click_message(
        slack,
        fake_slack,
        user="UCACHE",
        action_id=show["action_id"],
        value=show["value"],
        block_id=show["block_id"],
        ephemeral=True,
        reply_to="show",
    )
    card = replies_to(fake_slack, "show")[0]
    assert button(card["blocks"], blocks.PRACTICE_ANOTHER)["value"] == "caching", "guidance keeps the filter"
    # Two words: both must match.
    first = ask(slack, "databases hard", user="UCACHE")
    another = button(first["blocks"], blocks.PRACTICE_ANOTHER)
    assert another["value"] == "databases hard"
    click_message(
        slack,
        fake_slack,
        user="UCACHE",
        action_id=another["action_id"],
        value=another.get("value", ""),  # no filters: no value (slack_sdk leaves "" out)
        block_id=another["block_id"],
        ephemeral=True,
        reply_to="two-more",
    )
    assert titles_in(replies_to(fake_slack, "two-more")[0]["blocks"]) == ["isolation-anomalies"]

    # `/interview-question categories`: what the filters can be, with counts.
    listing = ask(slack, "categories", user="UASK")
    assert listing["response_type"] == "ephemeral"
    shown = dump(listing["blocks"])
    categories: dict[str, int] = {}
    tags: dict[str, int] = {}
    for q in BANK.values():
        categories[q["category"]] = categories.get(q["category"], 0) + 1
        for tag in q["tags"]:
            tags[tag] = tags.get(tag, 0) + 1
    for name, count in {**categories, **tags}.items():
        assert f"`{name}` ({count})" in shown, name
    assert not titles_in(listing), "a listing, not a question"


def test_home_practice_button_opens_a_modal_that_updates_in_place(start_bot, fake_slack, clock):
    _bot, slack = start_bot(drill_schedule="off", clock=clock)
    click_in_view(
        slack,
        user="UHOME",
        action_id=blocks.HOME_PRACTICE,
        value="home",
        view_id="VHOMETAB",
        view_type="home",
        block_id="home",
    )
    opened = fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"), timeout=5)
    assert opened[0].params["trigger_id"].endswith(".UHOME")
    modal = view_of(opened[0].params)
    assert modal["type"] == "modal" and modal["callback_id"] == blocks.PRACTICE_VIEW
    [first] = titles_in(modal)
    assert guidance(first) not in dump(modal)

    show = button(modal["blocks"], blocks.PRACTICE_GUIDANCE)
    click_in_view(
        slack,
        user="UHOME",
        action_id=show["action_id"],
        value=show["value"],
        view_id="VPRACTICE1",
        block_id=show["block_id"],
    )
    updated = fake_slack.wait_for(lambda: fake_slack.calls_to("views.update"), timeout=5)
    assert updated[0].params["view_id"] == "VPRACTICE1"
    with_guidance = view_of(updated[0].params)
    assert titles_in(with_guidance) == [first] and guidance(first) in dump(with_guidance)

    another = button(with_guidance["blocks"], blocks.PRACTICE_ANOTHER)
    click_in_view(
        slack,
        user="UHOME",
        action_id=another["action_id"],
        value=another.get("value", ""),  # no filters: no value (slack_sdk leaves "" out)
        view_id="VPRACTICE1",
        block_id=another["block_id"],
    )
    updated = fake_slack.wait_for(lambda: fake_slack.calls_to("views.update")[1:], timeout=5)
    assert updated[0].params["view_id"] == "VPRACTICE1"
    [second] = titles_in(view_of(updated[0].params))
    assert second != first, "a question not seen yet comes first"
    assert len(fake_slack.calls_to("views.open")) == 1
    assert not fake_slack.calls_to("response_url") and not fake_slack.posts()


# == 7. a drill posted by another process =====================================================================


def test_the_running_bot_runs_the_experience_for_a_drill_posted_elsewhere(
    start_bot, make_settings, fake_slack, clock, db, wait_ticks
):
    settings = make_settings(drill_schedule="off", drill_answer_window="2h", drill_sealed=True, drill_reminder="1h")
    bot, slack = start_bot(settings=settings, clock=clock)
    other = build_runtime(settings, clock=clock)  # e.g. `drillbot post` in another process
    try:
        outcome = other.service.post_today()
    finally:
        other.service.close()
        other.db.dispose()
    assert outcome.result == PostResult.POSTED
    drill_id, drill_ts = int(outcome.drill_id), str(outcome.ts)
    post = next(m for m in fake_slack.messages[CHANNEL] if m["ts"] == drill_ts)
    answer = button(post["blocks"], blocks.ANSWER_ACTION)
    assert answer["value"] == str(drill_id)

    submitted(submit_answer(slack, user="UALICE", drill_id=drill_id, text=f"SEALED-ALICE {HOSTILE}"))
    slack.reply(drill_ts, user="UBOB", at=clock(), text="thread answer by bob")
    clock.advance(seconds=6)
    fake_slack.wait_for(
        lambda: [c for c in count_updates(fake_slack, drill_ts) if "2 answered so far" in dump(c.params["blocks"])],
        timeout=5,
    )
    assert "SEALED-ALICE" not in visible_in_slack(fake_slack)

    clock.advance(hours=1)
    nudge = fake_slack.wait_for(lambda: reminders(fake_slack, drill_ts), timeout=5)
    assert len(nudge) == 1 and "2 answered" in dump(nudge[0])

    clock.advance(hours=1)
    reveal = reveal_of(fake_slack, drill_ts)
    assert "2 answered" in dump(reveal["blocks"])
    sealed = fake_slack.wait_for(lambda: sealed_posts(fake_slack, drill_ts), timeout=5)
    text = dump(sealed[0]["blocks"])
    assert "<@UALICE>" in text and f"SEALED-ALICE {HOSTILE_ESCAPED}" in text
    db.wait_closed(bot, drill_id)
    wait_ticks(bot)
    assert len(reminders(fake_slack, drill_ts)) == 1
    assert len(sealed_posts(fake_slack, drill_ts)) == 1


def test_a_late_count_update_never_reopens_a_closed_drill_message(start_bot, fake_slack, clock, db, wait_ticks):
    """Slack rate-limits chat.update; slack-sdk waits out Retry-After and sends the count update again. If
    the reveal closed the drill meanwhile, that stale update must not turn the message back into an open
    drill (with an Answer button on a drill that no longer takes answers)."""
    bot, slack = start_bot(drill_schedule="off", drill_answer_window="2h", drill_sealed=True, clock=clock)
    drill_id, drill_ts, _ = post_drill(bot, fake_slack)
    fake_slack.fail_next("chat.update", Failure(status=429, headers={"Retry-After": "2"}))
    submitted(submit_answer(slack, user="UALICE", drill_id=drill_id, text="sealed"))
    fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update"), timeout=5)  # the count update, rate-limited
    clock.advance(hours=2)
    reveal_of(fake_slack, drill_ts)
    db.wait_closed(bot, drill_id)
    # The live-count job that got the 429 is still waiting out Retry-After (2 s) in the Slack client; the
    # scheduler starts no new run of a job while one runs, so two completed runs of every job since now
    # mean that one has sent (or dropped) its stale update and finished. Then look at the message.
    wait_ticks(bot)
    message = next(m for m in fake_slack.messages[CHANNEL] if m["ts"] == drill_ts)
    shown = dump(message["blocks"])
    assert "Closed" in shown and "1 answered" in shown, f"the closed drill shows as open again: {shown}"
    assert blocks.ANSWER_ACTION not in action_ids(message["blocks"])
