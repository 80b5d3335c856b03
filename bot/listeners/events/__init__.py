from __future__ import annotations

from slack_bolt import Ack, App

from bot.drills import DrillService
from bot.listeners.events.home import home_publisher
from bot.listeners.events.message import message_listener

__all__ = ["register"]


def register(app: App, service: DrillService) -> None:
    app.event("message")(message_listener(service))
    app.event("app_home_opened")(ack=_ack, lazy=[home_publisher(service)])
    # Every other event is acknowledged by the app's unhandled-request handler (bot/app.py).


def _ack(ack: Ack) -> None:
    ack()
