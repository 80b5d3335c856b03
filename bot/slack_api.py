"""The Web API edge: building the WebClient and the few calls drillbot makes.

Retries: slack-sdk's own retry handlers, configured here once. A 429 is always safe to retry (Slack did
not act on it) and is waited out per `Retry-After`, up to `RATE_LIMIT_RETRIES` times; a refused or reset
connection likewise. A 5xx or a timeout is *not* retried here, because the message may have been posted:
the caller records the attempt and reconciles through message metadata before trying again (see
`bot.drills`).

Errors that no retry can fix (bad token, bot not in the channel) become `SlackSetupError` with the fix.

Metrics (optional): every call made through `SlackGateway` is counted by method and final outcome, and
every retry the handlers decide on (for any client sharing them, Bolt's per-request clients included) by
method and reason.
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.error import URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.models.metadata import Metadata
from slack_sdk.web import SlackResponse

from bot import heartbeat
from bot.drills.port import DRILL_EVENT, REVEAL_EVENT, SEALED_EVENT, Marked
from bot.errors import SlackSetupError
from bot.metrics import Metrics, slack_outcome

__all__ = [
    "DEFAULT_API_URL",
    "DRILL_EVENT",
    "REVEAL_EVENT",
    "SEALED_EVENT",
    "SlackGateway",
    "connection_problem",
    "make_client",
]

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
RATE_LIMIT_RETRIES = 20
CONNECTION_RETRIES = 3
HTTP_TIMEOUT_SECONDS = 15
MAX_HISTORY_PAGES = 20  # of 200 messages: a drill's thread or a channel's day, with room to spare

_FIXES = {
    "invalid_auth": "SLACK_BOT_TOKEN is wrong or revoked: copy the Bot User OAuth Token again",
    "not_authed": "SLACK_BOT_TOKEN is missing",
    "account_inactive": "the app was uninstalled or the token revoked: reinstall the app",
    "token_revoked": "the token was revoked: reinstall the app and update SLACK_BOT_TOKEN",
    "not_in_channel": "the bot is not in the channel: /invite the app there",
    "channel_not_found": "DRILL_CHANNEL is not a channel the bot can see: use the channel ID (C0123...)",
    "is_archived": "the drill channel is archived: unarchive it or change DRILL_CHANNEL",
    "missing_scope": "the app lacks a scope: reinstall it from manifest.yaml",
}


def connection_problem(exc: BaseException, url: str) -> str:
    """Why a request to `url` never got an answer, in words: DNS, refused, TLS, timeout (never a secret)."""
    reason: BaseException | str | None = exc.reason if isinstance(exc, URLError) else exc
    parts = urlsplit(url)
    host = parts.hostname or url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if isinstance(reason, socket.gaierror):
        return f"DNS lookup of {host} failed (no network, or a typo in the host name)"
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused by {host}:{port} (nothing listens there)"
    if isinstance(reason, ssl.SSLCertVerificationError):
        detail = getattr(reason, "verify_message", None) or "certificate verify failed"
        return f"TLS certificate of {host} not trusted ({detail}; a proxy intercepting HTTPS?)"
    if isinstance(reason, ssl.SSLError):
        detail = getattr(reason, "reason", None) or reason.__class__.__name__
        return f"TLS handshake with {host} failed ({detail})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer from {host} within {HTTP_TIMEOUT_SECONDS} s (timeout)"
    if isinstance(reason, ConnectionResetError):
        return f"connection to {host}:{port} reset"
    if isinstance(reason, OSError) and reason.strerror:
        return f"{reason.strerror} ({host}:{port})"
    name = reason if isinstance(reason, str) else reason.__class__.__name__ if reason is not None else "unknown"
    return f"{name} ({host}:{port})"


def _api_method(url: str) -> str:
    """chat.postMessage from https://slack.com/api/chat.postMessage?x=y."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "unknown"


class _Counted(RetryHandler):
    """Counts and logs each retry of the slack-sdk handler it is mixed into."""

    reason = "retry"

    def __init__(self, *, metrics: Metrics | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        method = _api_method(request.url)
        heartbeat.beat()  # the wait that follows may be long: the step holding a claim renews its lease
        if self.metrics is not None:
            self.metrics.slack_retry(method, self.reason)
        if error is not None:
            log.info("retrying %s (%s: %s)", method, self.reason, connection_problem(error, request.url))
        else:
            log.info("retrying %s (%s)", method, self.reason)
        super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)


class _CountedConnectionRetry(_Counted, ConnectionErrorRetryHandler):
    reason = "connection"


class _CountedRateLimitRetry(_Counted, RateLimitErrorRetryHandler):
    reason = "rate_limited"


def make_client(
    *, token: str | None, base_url: str, metrics: Metrics | None = None, connection_retries: int = CONNECTION_RETRIES
) -> WebClient:
    """A WebClient with drillbot's retry handlers; `connection_retries=0` answers a connection failure at once
    (`drillbot check --slack`: a person is waiting for the verdict)."""
    client = WebClient(token=token, base_url=base_url, timeout=HTTP_TIMEOUT_SECONDS)
    client.retry_handlers = [
        *([_CountedConnectionRetry(metrics=metrics, max_retry_count=connection_retries)] if connection_retries else []),
        _CountedRateLimitRetry(metrics=metrics, max_retry_count=RATE_LIMIT_RETRIES),
    ]
    return client


class SlackGateway:
    """The Slack calls the drill loop makes, with Slack's errors mapped to drillbot's."""

    def __init__(self, client: WebClient, *, metrics: Metrics | None = None) -> None:
        self.client = client
        self.metrics = metrics

    def post(
        self,
        channel: str,
        message: Mapping[str, Any],
        *,
        thread_ts: str | None = None,
        event_type: str | None = None,
        drill_id: int | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {"channel": channel, "unfurl_links": False, "unfurl_media": False, **message}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if event_type:
            marker = {"drill_id": drill_id, **(payload or {})}
            kwargs["metadata"] = Metadata(event_type=event_type, event_payload=marker)
        response = self._call("chat_postMessage", **kwargs)
        return str(response["ts"])

    def open_dm(self, user_id: str) -> str:
        response = self._call("conversations_open", users=user_id)
        return str((response.get("channel") or {})["id"])

    def verify_auth(self) -> dict[str, Any]:
        """auth.test: fail fast, with the fix, when the token is wrong or Slack cannot be reached."""
        try:
            return dict(self._call("auth_test").data)
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown") if exc.response is not None else "unknown"
            raise SlackSetupError(f"Slack refused SLACK_BOT_TOKEN (auth.test: {error})") from None
        except OSError as exc:
            base = self.client.base_url
            where = f"{base}auth.test" + ("" if base == DEFAULT_API_URL else " (SLACK_API_URL)")
            raise SlackSetupError(f"cannot reach Slack at {where}: {connection_problem(exc, base)}") from None

    def channel_access(self, channel: str) -> str | None:
        """None when the bot can read `channel` (so it is a member); else Slack's error code, e.g.
        `not_in_channel` (public channel, bot not invited) or `channel_not_found` (wrong ID, or a private
        channel the bot is not in). One cheap call: conversations.history with limit=1."""
        try:
            self.client.conversations_history(channel=channel, limit=1)
        except SlackApiError as exc:
            return str(exc.response.get("error", "unknown")) if exc.response is not None else "unknown"
        return None

    def update(self, channel: str, ts: str, message: Mapping[str, Any]) -> None:
        self._call("chat_update", channel=channel, ts=ts, **message)

    def find_marked(
        self, channel: str, *, event_type: str, drill_id: int, oldest: float, thread_ts: str | None = None
    ) -> list[Marked]:
        """Every message drillbot posted for this drill with this event type (found by its metadata)."""
        found = []
        for message in self._history(channel, oldest=oldest, thread_ts=thread_ts):
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == event_type and payload.get("drill_id") == drill_id:
                found.append(Marked(str(message["ts"]), dict(payload)))
        return found

    def _history(self, channel: str, *, oldest: float, thread_ts: str | None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"channel": channel, "oldest": f"{oldest:.6f}", "include_all_metadata": True,
                                  "limit": 200}
        if thread_ts:
            pages = self._pages("conversations_replies", ts=thread_ts, **params)
        else:
            pages = self._pages("conversations_history", **params)
        for page in itertools.islice(pages, MAX_HISTORY_PAGES):
            yield from page.get("messages") or []

    def _pages(self, method: str, **kwargs: Any) -> Iterator[SlackResponse]:
        """Every page of a paginated call: slack-sdk's response follows `next_cursor` itself when iterated;
        each page is one Web API call, counted and with its errors mapped like `_call`'s."""
        pages = iter(self._call(method, **kwargs))
        yield next(pages)  # the first page is the response itself (already counted)
        while True:
            try:
                page = self._guarded(method, lambda: next(pages))
            except StopIteration:
                return
            yield page

    def _call(self, method: str, **kwargs: Any) -> Any:
        return self._guarded(method, lambda: getattr(self.client, method)(**kwargs))

    def _guarded(self, method: str, call: Callable[[], Any]) -> Any:
        heartbeat.beat()
        try:
            response = call()
        except StopIteration:
            raise
        except Exception as exc:
            self._count(method, exc)
            if not isinstance(exc, SlackApiError):
                raise
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            if error in _FIXES:
                raise SlackSetupError(f"Slack refused {method.replace('_', '.')}: {error}: {_FIXES[error]}") from None
            raise
        self._count(method, None)
        return response

    def _count(self, method: str, exc: Exception | None) -> None:
        if self.metrics is None:
            return
        try:
            self.metrics.slack_call(_slack_method(method), slack_outcome(exc))
        except Exception:  # metrics never break a Slack call
            log.debug("could not count a Slack call", exc_info=True)


def _slack_method(name: str) -> str:
    """chat_postMessage -> chat.postMessage (the Web API's own spelling)."""
    return name.replace("_", ".")
