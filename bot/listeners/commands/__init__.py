from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from ssl import SSLContext
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.drills import DrillService
from bot.listeners.commands.interview_question import COMMAND, command_responder

__all__ = ["COMMAND", "hand_off", "register"]

log = logging.getLogger(__name__)


def hand_off(
    service: DrillService, executor: Executor, *, proxy: str | None = None, ssl: SSLContext | None = None
) -> Callable[..., None]:
    """`hand_off(command, respond=None)`: queue the answer to an acknowledged `/interview-question` on
    `executor`; it arrives through the command's response_url. Used by the Bolt listener below (Socket Mode)
    and by the HTTP edge, which acknowledges the command on its event loop (`bot.web.SlackEdge`)."""
    answer = command_responder(service)

    def submit(command: dict[str, Any], respond: Respond | None = None) -> None:
        if respond is None:
            respond = Respond(response_url=command.get("response_url"), proxy=proxy, ssl=ssl)
        executor.submit(_logged, answer, dict(command), respond)

    return submit


def register(app: App, service: DrillService, executor: Executor) -> None:
    # Ack at once with nothing; the answer follows through response_url from drillbot's own executor, so a
    # slow database or Slack never delays the ack. Not a Bolt lazy listener: that deep-copies the whole
    # request and its context on the request thread, before the ack (a third of the ack's CPU, measured).
    submit = hand_off(service, executor)

    def ack_and_hand_off(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack()
        submit(command, respond)

    app.command(COMMAND)(ack_and_hand_off)


def _logged(answer: Callable[..., None], command: dict[str, Any], respond: Respond) -> None:
    """Run the answer; a failure is logged with its traceback (an executor would keep it in a Future)."""
    try:
        answer(command=command, respond=respond)
    except Exception:
        log.exception("answering %s failed", COMMAND)
