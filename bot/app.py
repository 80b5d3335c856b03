"""Builds the Bolt app. Nothing else: the server, the scheduler and the CLI live elsewhere."""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot import listeners
from bot.drills import DrillService
from bot.errors import RetryLater
from bot.settings import Settings

__all__ = ["build_app"]

log = logging.getLogger(__name__)


def _not_the_token_notice(record: logging.LogRecord) -> bool:
    # Bolt reads SLACK_BOT_TOKEN from the environment by itself and, since drillbot hands it a ready
    # client (with drillbot's retry handlers), warns at every start that the token "will be unused".
    return "`token` will be unused" not in str(record.msg)


_BOLT_LOG = logging.getLogger("bot.bolt")
_BOLT_LOG.addFilter(_not_the_token_notice)


def build_app(
    settings: Settings,
    service: DrillService,
    *,
    client: WebClient,
    socket_mode: bool = False,
    listener_executor: Executor | None = None,
) -> App:
    secret = settings.slack_signing_secret
    app = App(
        client=client,
        signing_secret=secret.get_secret_value() if secret else None,
        # Listeners ack first and hand slow work to lazy functions, so running them before the
        # response is what keeps acks fast (no polling for the ack) and answers durable.
        process_before_response=True,
        request_verification_enabled=not socket_mode,
        listener_executor=listener_executor,
        logger=_BOLT_LOG,
    )
    listeners.register(app, service)

    @app.error
    def log_listener_error(error: Exception, body: dict[str, Any], response: BoltResponse | None) -> None:
        kind = body.get("type") or body.get("command") or "request"
        log.error("listener failed on %s", kind, exc_info=error)
        if response is not None and not isinstance(error, SQLAlchemyError | RetryLater):
            # A payload the listener cannot handle will not improve on redelivery: acknowledge it. A
            # database failure keeps its 500 so Slack redelivers and the answer is not lost.
            response.status = 200
            response.body = ""

    return app
