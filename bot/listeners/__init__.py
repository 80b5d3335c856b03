"""Listener wiring. Each folder holds the handlers of one Slack surface; this module only registers."""

from __future__ import annotations

from concurrent.futures import Executor

from slack_bolt import App

from bot.drills import DrillService
from bot.listeners import actions, commands, events, views

__all__ = ["register"]


def register(app: App, service: DrillService, executor: Executor) -> None:
    """`executor` runs what follows an ack (a slash command's answer)."""
    events.register(app, service)
    commands.register(app, service, executor)
    actions.register(app, service)
    views.register(app, service)
    # Anything else Slack sends (an old button, a shortcut, an event type we do not use) is acknowledged by
    # the app's error handler (bot/app.py: Bolt's unhandled-request error), over HTTP and Socket Mode alike.
