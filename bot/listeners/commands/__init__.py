from __future__ import annotations

from slack_bolt import Ack, App

from bot.drills import DrillService
from bot.listeners.commands.interview_question import COMMAND, command_responder

__all__ = ["register"]


def register(app: App, service: DrillService) -> None:
    # Ack at once with nothing; the answer follows through response_url (Bolt's lazy listener runs it on
    # the listener thread pool), so a slow database or Slack never delays the ack.
    app.command(COMMAND)(ack=_ack, lazy=[command_responder(service)])


def _ack(ack: Ack) -> None:
    ack()
