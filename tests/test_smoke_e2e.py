from __future__ import annotations

import json

from tests.conftest import CHANNEL, reply_event


def test_scheduled_post_answer_and_reveal(start_bot, fake_slack):
    bot, slack = start_bot(drill_schedule="0 0 1 1 *", drill_answer_window="3s")
    assert bot.runtime.service.post_today().result == "posted"
    post = fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=5)[0]
    drill_ts = post.status and fake_slack.messages[CHANNEL][0]["ts"]
    status, _ = slack.event(reply_event(drill_ts, user="UALICE"))
    assert status == 200
    reveal = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=10)
    assert len(reveal) == 1
    assert reveal[0].params["thread_ts"] == drill_ts
    assert "1 answered" in json.dumps(reveal[0].params["blocks"])
    status, body = slack.get("/healthz")
    assert status == 200 and json.loads(body)["database"] == "ok"
