"""bot/slack_api.py against the fake Slack over HTTP: markers in message metadata, found across pages."""

from __future__ import annotations

from bot.metrics import Metrics
from bot.slack_api import DRILL_EVENT, REVEAL_EVENT, SlackGateway, make_client
from tests.fakes.slack import FakeSlack
from tests.fakes.workspace import BOT_TOKEN

CHANNEL = "CPAGES001"


def test_a_marked_message_is_found_behind_several_pages_and_every_page_is_counted(fake_slack: FakeSlack) -> None:
    metrics = Metrics()
    gateway = SlackGateway(make_client(token=BOT_TOKEN, base_url=fake_slack.url, metrics=metrics), metrics=metrics)
    drill_ts = gateway.post(CHANNEL, {"text": "drill"}, event_type=DRILL_EVENT, drill_id=7, payload={"day": "x"})
    for i in range(450):  # newer chatter: the marked message is on the third page of 200
        fake_slack.messages[CHANNEL].append({"ts": f"{1_800_000_000 + i}.000100", "type": "message", "text": "hi"})

    found = gateway.find_marked(CHANNEL, event_type=DRILL_EVENT, drill_id=7, oldest=0)

    assert [(m.ts, m.payload) for m in found] == [(drill_ts, {"drill_id": 7, "day": "x"})]
    pages = [c for c in fake_slack.calls if c.method == "conversations.history"]
    assert [c.params.get("cursor") for c in pages] == [None, "page:200", "page:400"]
    counted = metrics.registry.get_sample_value(
        "drillbot_slack_api_calls_total", {"method": "conversations.history", "outcome": "ok"}
    )
    assert counted == 3
    posted = fake_slack.calls_to("chat.postMessage")[0].params["metadata"]
    assert posted == {"event_type": DRILL_EVENT, "event_payload": {"drill_id": 7, "day": "x"}}
    assert gateway.find_marked(CHANNEL, event_type=REVEAL_EVENT, drill_id=7, oldest=0) == []
