"""The whole loop once, end to end: a posted drill, a signed reply, the reveal at the deadline."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.fakes.events import reply_event
from tests.fakes.workspace import CHANNEL


def test_scheduled_post_answer_and_reveal(start_bot, fake_slack, make_clock, db):
    clock = make_clock(datetime.now(UTC), running=True)
    bot, slack = start_bot(drill_schedule="off", drill_answer_window="1h", clock=clock)
    assert bot.runtime.service.post_today().result == "posted"
    post = fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=5)[0]
    drill_ts = post.status and fake_slack.messages[CHANNEL][0]["ts"]
    status, _ = slack.event(reply_event(drill_ts, user="UALICE", ts=clock().timestamp()))
    assert status == 200
    clock.advance(hours=1)  # past the deadline
    reveal = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=10)
    assert len(reveal) == 1
    assert reveal[0].params["thread_ts"] == drill_ts
    assert "1 answered" in json.dumps(reveal[0].params["blocks"])
    status, body = slack.get("/healthz")
    assert status == 200 and json.loads(body)["database"] == "ok"
