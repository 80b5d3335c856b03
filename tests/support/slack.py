"""The fake Slack, and the real bot in-process against it (real HTTP, really signed requests).

`start_bot(clock=..., **settings)` builds the runtime the way `drillbot run` does, serves HTTP on a port the
system picks, and returns the bot and a sender signed like Slack. A FakeClock given to it wakes the bot's
scheduler whenever the test moves the clock. At the end of the test the fake Slack lets every delayed call
go first, so stopping the bots never waits out a delay the test no longer cares about.

`ask(sender, text, user=...)` sends /interview-question and returns what the bot posted to its
response_url; `home_of(sender, user)` opens the App Home tab and returns the view the bot published.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.runtime import Bot, build_runtime
from bot.settings import Settings
from tests.fakes.events import SlackSender
from tests.fakes.slack import FakeSlack
from tests.fakes.workspace import CHANNEL
from tests.support.clock import FakeClock, poke


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


StartBot = Callable[..., tuple[Bot, SlackSender]]


@pytest.fixture
def start_bot(make_settings: Callable[..., Settings], fake_slack: FakeSlack) -> Iterator[StartBot]:
    bots: list[Bot] = []
    unsubscribe: list[Callable[[], None]] = []

    def factory(
        *, settings: Settings | None = None, clock: Callable[[], Any] | None = None, **overrides: Any
    ) -> tuple[Bot, SlackSender]:
        settings = settings or make_settings(**overrides)
        kwargs = {"clock": clock} if clock else {}
        bot = Bot(build_runtime(settings, verify_token=True, **kwargs), mode="http", host="127.0.0.1", port=0)
        bot.start()
        bots.append(bot)
        if isinstance(clock, FakeClock):
            unsubscribe.append(clock.on_change(lambda: poke(bot)))
        assert bot.server is not None
        return bot, SlackSender(f"http://127.0.0.1:{bot.server.port}")

    yield factory
    for stop_listening in unsubscribe:
        stop_listening()
    fake_slack.release()
    for bot in bots:
        bot.stop(deadline_seconds=5)


@pytest.fixture
def ask(fake_slack: FakeSlack) -> Callable[..., dict[str, Any]]:
    """`ask(sender, text, user=..., channel=...)`: the reply to a signed /interview-question (one reply)."""
    names = itertools.count(1)

    def run(sender: SlackSender, text: str, *, user: str = "UASKER01", channel: str = CHANNEL) -> dict[str, Any]:
        name = f"ask-{next(names)}"
        status, body = sender.command(text, user_id=user, channel_id=channel, response_url=fake_slack.response_url(name))
        assert status == 200 and body == b"", (status, body)
        replies = fake_slack.wait_for(lambda: fake_slack.responses(name), timeout=5)
        assert len(replies) == 1, f"one command, one reply; got {len(replies)}"
        return replies[0]

    return run


@pytest.fixture
def home_of(fake_slack: FakeSlack) -> Callable[..., dict[str, Any]]:
    """`home_of(sender, user)`: `user` opens the App Home tab; returns the view the bot published."""

    def run(sender: SlackSender, user: str) -> dict[str, Any]:
        before = len(fake_slack.published_views(user))
        event = {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home",
                 "event_ts": f"{time.time():.6f}"}
        status, body = sender.event(event)
        assert status == 200, (status, body)
        return fake_slack.wait_for(lambda: fake_slack.published_views(user)[before:], timeout=5)[-1]  # type: ignore[no-any-return]

    return run
