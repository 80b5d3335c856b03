"""Builds the Bolt app. Nothing else: the server, the scheduler and the CLI live elsewhere."""

from __future__ import annotations

import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot import listeners
from bot.drills import DrillService
from bot.errors import RetryLater
from bot.settings import Settings

__all__ = ["build_app"]

log = logging.getLogger(__name__)


def build_app(
    settings: Settings,
    service: DrillService,
    *,
    client: WebClient,
    socket_mode: bool = False,
    listener_executor: Executor | None = None,
) -> App:
    """The Bolt app with drillbot's listeners. It is the same app over HTTP and Socket Mode (`socket_mode`
    is kept for callers): Bolt never checks signatures itself, the HTTP edge does (bot/web.py)."""
    secret = settings.slack_signing_secret
    bolt_log = logging.getLogger("bot.bolt")
    # Bolt warns "As you gave `client` as well, `token` will be unused" whenever SLACK_BOT_TOKEN is in the
    # environment (it reads it even when given a client); the client carries that very token.
    quiet = _DropMessage(warning_client_prioritized_and_token_skipped())
    bolt_log.addFilter(quiet)
    try:
        app = App(
            client=client,
            signing_secret=secret.get_secret_value() if secret else None,
            # Listeners ack first and hand slow work to an executor (lazy functions, or ours), so running them
            # before the response is what keeps acks fast (no polling for the ack) and answers durable.
            process_before_response=True,
            # One signature check: the HTTP edge (bot/web.py) verifies every request before Bolt sees it;
            # Socket Mode requests come over Slack's own authenticated connection.
            request_verification_enabled=False,
            # Requests no listener handles reach the error handler below, which acknowledges them.
            raise_error_for_unhandled_request=True,
            listener_executor=listener_executor,
            logger=bolt_log,
        )
    finally:
        bolt_log.removeFilter(quiet)
    # What follows an ack runs on the listener executor (the bot's, drained at stop), else a small own one.
    after_ack = listener_executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="after-ack")
    listeners.register(app, service, after_ack)

    @app.error
    def log_listener_error(error: Exception, body: dict[str, Any], response: BoltResponse | None) -> None:
        kind = body.get("type") or body.get("command") or "request"
        if isinstance(error, BoltUnhandledRequestError):
            # An event, button or shortcut drillbot does not use: acknowledged and ignored, over HTTP and
            # Socket Mode alike (anything but an ack is a failed delivery that Slack retries).
            log.debug("no listener for %s; acknowledged", kind if isinstance(kind, str) else "request")
            if response is not None:
                response.status = 200
                response.body = ""
            return
        log.error("listener failed on %s", kind, exc_info=error)
        if response is not None and not isinstance(error, SQLAlchemyError | RetryLater):
            # A payload the listener cannot handle will not improve on redelivery: acknowledge it. A
            # database failure keeps its 500 so Slack redelivers and the answer is not lost.
            response.status = 200
            response.body = ""

    return app


class _DropMessage(logging.Filter):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message
