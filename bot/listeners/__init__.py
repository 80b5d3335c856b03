"""Listener wiring. Each folder holds the handlers of one Slack surface; this module only registers."""

from __future__ import annotations

import re

from slack_bolt import Ack, App

from bot.drills import DrillService
from bot.listeners import actions, commands, events, views

__all__ = ["register"]


def register(app: App, service: DrillService) -> None:
    events.register(app, service)
    commands.register(app, service)
    actions.register(app, service)
    views.register(app, service)
    # Anything else Slack sends (an old button, a shortcut) is acknowledged and ignored, over HTTP and
    # Socket Mode alike: an unacknowledged request is a failed delivery that Slack retries.
    anything = re.compile(".*")
    for register_on in (app.action, app.view, app.shortcut, app.options):
        register_on(anything)(_ack)


def _ack(ack: Ack) -> None:
    ack()
