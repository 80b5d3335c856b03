"""The suite's fixtures come from the tests/support plugins; importable fakes live in tests/fakes."""

from __future__ import annotations

# Re-exported for test modules written before tests/fakes/workspace.py and tests/fakes/events.py;
# new tests import these from tests.fakes directly.
from tests.fakes.events import SlackSender, reply_event
from tests.fakes.workspace import BOT_TOKEN, CHANNEL, MANAGER, SIGNING_SECRET, TEST_BANK

__all__ = ["BOT_TOKEN", "CHANNEL", "MANAGER", "SIGNING_SECRET", "TEST_BANK", "SlackSender", "reply_event"]

pytest_plugins = [
    "tests.support.waiting",
    "tests.support.clock",
    "tests.support.environment",
    "tests.support.database",
    "tests.support.slack",
    "tests.support.cli",
    "tests.support.processes",
    "tests.support.markers",
    "tests.support.scheduling",
]
