"""Socket Mode wiring, as far as it can be tested offline.

The same Bolt app serves Socket Mode: requests arrive as envelopes instead of HTTP posts. Here the
envelopes are handed to Bolt's real SocketModeHandler with a recording client in place of the websocket,
and the fake Slack receives every Web API call; a subprocess checks that `drillbot run --socket` (and
`drillbot run` with SLACK_APP_TOKEN set) opens a Socket Mode connection with the app token.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.app import build_app
from bot.runtime import build_runtime
from storage import repo
from tests.fakes.events import reply_event
from tests.fakes.workspace import APP_TOKEN, BOT_TOKEN, CHANNEL


class RecordingSocketClient:
    def __init__(self) -> None:
        self.responses: list[SocketModeResponse] = []
        self.logger = logging.getLogger("test.socket")

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        self.responses.append(response)


def _handler(make_settings: Any) -> tuple[Any, SocketModeHandler]:
    settings = make_settings(slack_app_token=APP_TOKEN, slack_signing_secret=None)
    runtime = build_runtime(settings, verify_token=True)
    app = build_app(settings, runtime.service, client=runtime.client, socket_mode=True)
    return runtime, SocketModeHandler(app, APP_TOKEN)


def test_events_and_commands_over_socket_mode(make_settings, fake_slack):
    runtime, handler = _handler(make_settings)
    client = RecordingSocketClient()
    try:
        drill = runtime.service.post_today()
        event = {"type": "event_callback", "team_id": "T0FAKE", "event_id": "Ev1",
                 "event": reply_event(str(drill.ts), user="USOCKET")}
        handler.handle(client, SocketModeRequest(type="events_api", envelope_id="env-1", payload=event))
        command = {"command": "/interview-question", "text": "help", "user_id": "USOCKET", "team_id": "T0FAKE",
                   "channel_id": CHANNEL, "response_url": fake_slack.response_url("socket"), "trigger_id": "t"}
        handler.handle(client, SocketModeRequest(type="slash_commands", envelope_id="env-2", payload=command))
        unknown = {"type": "event_callback", "team_id": "T0FAKE", "event": {"type": "reaction_added", "user": "U1"}}
        handler.handle(client, SocketModeRequest(type="events_api", envelope_id="env-3", payload=unknown))
        old_button = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T0FAKE"}, "trigger_id": "t",
                      "actions": [{"action_id": "a_button_from_an_old_version", "type": "button"}]}
        handler.handle(client, SocketModeRequest(type="interactive", envelope_id="env-4", payload=old_button))

        # Every envelope acked, the ones no listener handles too.
        assert [r.envelope_id for r in client.responses] == ["env-1", "env-2", "env-3", "env-4"]
        with runtime.db.transaction() as session:
            assert repo.answerer_count(session, int(drill.drill_id or 0)) == 1
        reply = fake_slack.wait_for(lambda: fake_slack.calls_to("response_url"))[0]
        assert "/interview-question" in reply.params["text"]
    finally:
        runtime.service.close()
        runtime.db.dispose()


@pytest.mark.parametrize("args", [("run", "--socket"), ("run",)], ids=["--socket", "app-token"])
def test_run_opens_a_socket_mode_connection_with_the_app_token(fake_slack, launch, bot_env, args):
    env = bot_env(slack_app_token=APP_TOKEN, slack_signing_secret=None)
    process = launch(*args, env=env)
    fake_slack.wait_for(lambda: fake_slack.calls_to("apps.connections.open"), timeout=30)
    process.sigterm()
    call = fake_slack.calls_to("apps.connections.open")[-1]
    assert call.headers["authorization"] == f"Bearer {APP_TOKEN}"
    err = process.stderr()
    assert APP_TOKEN not in err and BOT_TOKEN not in err
    assert "will be unused" not in err  # Bolt's client/token warning (SLACK_BOT_TOKEN is set) is gone
