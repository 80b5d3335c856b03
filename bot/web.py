"""The HTTP edge: a small WSGI app in front of Bolt, served by cheroot (CherryPy's production server).

Routes: POST /slack/events (events, slash commands, interactivity), GET /healthz. Before Bolt sees a
request it is size-checked (413 over 1 MB), signature-checked (401: wrong or missing signature, or a
timestamp more than five minutes old) and parse-checked (400), so hostile input never reaches a
listener and never turns into a 5xx. A signed request that no listener handles is acknowledged with 200:
Slack counts a 404 as a failed delivery and would retry it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cheroot import wsgi
from slack_bolt import App, BoltRequest
from slack_sdk.signature import SignatureVerifier

__all__ = ["MAX_BODY_BYTES", "HttpServer", "SlackWsgi"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
EVENTS_PATH = "/slack/events"
StartResponse = Callable[..., Any]


CONTENT_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})


class SlackWsgi:
    def __init__(self, app: App, *, signing_secret: str, health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.app = app
        self.verifier = SignatureVerifier(signing_secret)
        self.health = health

    def _signed(self, raw: bytes, environ: dict[str, Any]) -> bool:
        timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""))
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
        if not timestamp.isdigit() or not signature:
            return False
        try:
            return self.verifier.is_valid(raw, timestamp, signature)
        except (ValueError, UnicodeDecodeError):  # slack-sdk decodes the body: not UTF-8 cannot be Slack's
            return False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            healthy, body = self.health()
            return _reply(start_response, 200 if healthy else 503, json.dumps(body), "application/json")
        if path != EVENTS_PATH:
            return _reply(start_response, 404, "not found")
        if method != "POST":
            return _reply(start_response, 405, "method not allowed")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _reply(start_response, 400, "bad content-length")
        if length > MAX_BODY_BYTES:
            return _reply(start_response, 413, "request body too large")
        raw = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            return _reply(start_response, 413, "request body too large")
        headers = _headers(environ)
        if not self._signed(raw, environ):
            return _reply(start_response, 401, "invalid signature")
        media_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
        if media_type not in CONTENT_TYPES:
            return _reply(start_response, 415, "expected application/json or application/x-www-form-urlencoded")
        try:
            body = raw.decode("utf-8")
            request = BoltRequest(body=body, query=environ.get("QUERY_STRING", ""), headers=headers)
        except Exception:  # undecodable or unparseable: the sender's fault, never ours
            return _reply(start_response, 400, "cannot parse the request body")
        if not _well_formed(request.body):
            return _reply(start_response, 400, "malformed Slack payload")
        try:
            response = self.app.dispatch(request)
        except Exception:  # Bolt could not even route it: a shape no real Slack request has
            log.warning("could not dispatch a signed request", exc_info=True)
            return _reply(start_response, 400, "malformed Slack payload")
        if response.status == 404:
            return _reply(start_response, 200, "")
        content_type = response.headers.get("content-type", ["text/plain;charset=utf-8"])[0]
        return _reply(start_response, response.status, response.body, content_type)


def _well_formed(body: Any) -> bool:
    """The envelope fields Bolt relies on have the types Slack sends (the rest is the listeners' job)."""
    if not isinstance(body, dict) or not body:
        return False
    event = body.get("event")
    if "event" in body and not (isinstance(event, dict) and isinstance(event.get("type"), str)):
        return False
    actions = body.get("actions")
    if "actions" in body and not (isinstance(actions, list) and all(isinstance(a, dict) for a in actions)):
        return False
    return all(key not in body or isinstance(body[key], dict) for key in ("view", "user", "team", "container"))


def _headers(environ: dict[str, Any]) -> dict[str, str | Sequence[str]]:
    headers: dict[str, str | Sequence[str]] = {
        key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _reply(
    start_response: StartResponse, status: int, body: str, content_type: str = "text/plain; charset=utf-8"
) -> list[bytes]:
    data = body.encode("utf-8")
    start_response(
        f"{status} {_REASONS.get(status, 'Status')}",
        [("Content-Type", content_type), ("Content-Length", str(len(data)))],
    )
    return [data]


class HttpServer:
    """cheroot in a background thread: `start()` binds (port 0 picks a free one), `stop()` drains."""

    def __init__(self, app: Callable[..., Any], *, host: str, port: int, threads: int = 16) -> None:
        self.server = wsgi.Server((host, port), app, numthreads=threads, shutdown_timeout=5)
        self.server.max_request_body_size = MAX_BODY_BYTES + 1
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    def start(self) -> None:
        self.server.prepare()
        self.thread = threading.Thread(target=self.server.serve, name="http", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to 5 s), close."""
        self.server.stop()
        if self.thread is not None:
            self.thread.join(timeout=6)
