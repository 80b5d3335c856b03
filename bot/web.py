"""The HTTP edge: a small WSGI app in front of Bolt, served by cheroot (CherryPy's production server).

Routes: POST /slack/events (events, slash commands, interactivity); GET /healthz (the process and its
database), GET /readyz (ready for traffic: database and scheduler), GET /metrics (Prometheus).

Before Bolt sees a request it is size-checked (413 over 1 MB), signature-checked (401: wrong or missing
signature, or a timestamp more than five minutes old) and parse-checked (400), so hostile input never
reaches a listener and never turns into a 5xx. A signed request that no listener handles is acknowledged with 200:
Slack counts a 404 as a failed delivery and would retry it.

Each request to /slack/events is counted (by Slack request type and status), timed (the ack latency) and
logged in one INFO line with method, path, status, type, duration and the Slack event id; probes log at
DEBUG so a scraper polling every few seconds does not flood the log.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cheroot import wsgi
from slack_bolt import App, BoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.logs import bind
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.metrics import Metrics, request_type

__all__ = ["MAX_BODY_BYTES", "HttpServer", "SlackWsgi"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
EVENTS_PATH = "/slack/events"
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
StartResponse = Callable[..., Any]
Check = Callable[[], tuple[bool, dict[str, Any]]]


CONTENT_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})


class SlackWsgi:
    def __init__(
        self,
        app: App,
        *,
        signing_secret: str,
        health: Check,
        ready: Check | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.verifier = SignatureVerifier(signing_secret)
        self.health = health
        self.ready = ready
        self.metrics = metrics

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
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        retry = str(environ["HTTP_X_SLACK_RETRY_NUM"])[:8] if environ.get("HTTP_X_SLACK_RETRY_NUM") else None
        if path in PROBES and method in ("GET", "HEAD"):
            reply = self._probe(path)
        elif path == EVENTS_PATH:
            with bind(slack_retry_num=retry):
                reply = self._slack(environ, method)
        else:
            reply = _Reply(404, "not found")
        seconds = time.perf_counter() - started
        if path == EVENTS_PATH and self.metrics is not None:
            self.metrics.request(reply.kind, reply.status, seconds)
        level = logging.DEBUG if path in PROBES else logging.INFO
        if log.isEnabledFor(level):
            fields: dict[str, Any] = {
                "method": method,
                "path": path[:200],
                "status": reply.status,
                "type": reply.kind,
                "duration_ms": round(seconds * 1000, 2),
            }
            if reply.event_id:
                fields["slack_event_id"] = reply.event_id
            if retry:
                fields["slack_retry_num"] = retry
            log.log(level, "%s %s %d", method, path[:200], reply.status, extra=fields)
        return _reply(start_response, reply.status, reply.body, reply.content_type)

    def _probe(self, path: str) -> _Reply:
        if path == "/metrics":
            if self.metrics is None:
                return _Reply(404, "not found")
            return _Reply(200, self.metrics.render().decode("utf-8"), METRICS_CONTENT_TYPE)
        check = self.health if path == "/healthz" else self.ready
        if check is None:
            return _Reply(404, "not found")
        ok, body = check()
        return _Reply(200 if ok else 503, json.dumps(body), "application/json")

    def _slack(self, environ: dict[str, Any], method: str) -> _Reply:
        if method != "POST":
            return _Reply(405, "method not allowed")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _Reply(400, "bad content-length")
        if length > MAX_BODY_BYTES:
            return _Reply(413, "request body too large")
        raw = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            return _Reply(413, "request body too large")
        headers = _headers(environ)
        if not self._signed(raw, environ):
            return _Reply(401, "invalid signature")
        media_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
        if media_type not in CONTENT_TYPES:
            return _Reply(415, "expected application/json or application/x-www-form-urlencoded")
        try:
            body = raw.decode("utf-8")
            request = BoltRequest(body=body, query=environ.get("QUERY_STRING", ""), headers=headers)
        except Exception:  # undecodable or unparseable: the sender's fault, never ours
            return _Reply(400, "cannot parse the request body")
        if not _well_formed(request.body):
            return _Reply(400, "malformed Slack payload")
        kind, event_id = request_type(request.body), _slack_event_id(request.body)
        try:
            with bind(slack_event_id=event_id):
                response = self.app.dispatch(request)
        except Exception:  # Bolt could not even route it: a shape no real Slack request has
            log.warning("could not dispatch a signed request", exc_info=True)
            return _Reply(400, "malformed Slack payload", kind=kind, event_id=event_id)
        if response.status == 404:
            return _Reply(200, "", kind=kind, event_id=event_id)
        content_type = response.headers.get("content-type", ["text/plain;charset=utf-8"])[0]
        return _Reply(response.status, response.body, content_type, kind=kind, event_id=event_id)


@dataclass(frozen=True)
class _Reply:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    kind: str = "other"
    event_id: str | None = None


def _slack_event_id(body: dict[str, Any]) -> str | None:
    """What identifies this delivery in Slack's terms: the event id, else the trigger id (commands, actions)."""
    for key in ("event_id", "trigger_id"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value[:64]
    return None


def _well_formed(body: Any) -> bool:
    """The envelope fields Bolt relies on have the types Slack sends (the rest is the listeners' job)."""
    if not isinstance(body, dict) or not body:
        return False
    if "type" in body and not isinstance(body["type"], str):  # Bolt and our metrics compare it as a string
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
        # cheroot's defaults (a listen backlog of 5, 10 idle keep-alive connections) reset connections
        # under a burst of events; a reset is a failed delivery Slack retries (bench/ingest.py shows it).
        self.server.request_queue_size = 128
        self.server.keep_alive_conn_limit = 256
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
