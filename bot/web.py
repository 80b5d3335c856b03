"""The HTTP edge: drillbot's own small ASGI app in front of Bolt, and the uvicorn server that runs it.

Two listeners, each on its own port:

- the Slack port (`PORT`): POST /slack/events (events, slash commands, interactivity), GET /healthz (the
  process and its database), GET /readyz (ready for traffic: database and scheduler). Anything else is
  404, /metrics included: this port is on the internet.
- the metrics port (`METRICS_PORT` on `METRICS_HOST`, only when `METRICS_PORT` is set): GET /metrics,
  prometheus-client's own WSGI app (content negotiation, gzip) on a thread of its own.

Why uvicorn (issue 16; on uvloop where installed): an open connection is a few kilobytes in its event
loop, not a thread, so clients that never finish a request cost a socket and nothing else. On top of that,
a connection that has not sent a complete request head within `HEADER_SECONDS` is closed (uvicorn itself
would wait forever), and the body is read with a deadline (`BODY_SECONDS`, else 408). Only a complete,
signed request takes a thread: the parse and Bolt's `App.dispatch` run on a bounded pool
(`REQUEST_THREADS`), the probes on a pool of their own, so neither a burst of Slack traffic nor slow
clients delay a load balancer's probe.

Before Bolt sees a request it is size-checked (413 over 1 MB), signature-checked (401: wrong or missing
signature, or a timestamp more than five minutes old; the only check, Bolt's own is off) and parse-checked
(415, 400), so hostile input never reaches a listener and never turns into a 5xx.

A signed `message` event that no listener acts on (`messages`, e.g. `bot.domain.answers.concerns_answers`
says so: top-level chatter, bot messages, joins) is acknowledged right there on the event loop, without a
request thread or Bolt's middleware: the bot receives every message of its channels, and most are those.
A person's thread reply (`answers.wants`) goes to the answer intake (`bot.intake`), which stores the
replies of one turn of the loop together and answers each once its group has committed: 200, or 500 when
it could not be stored (Slack redelivers it). A slash command drillbot owns (`commands`) is acknowledged
there too, its answer queued for the bot's executor (it arrives through the command's response_url), so
the ack never waits for a request thread behind other work. Everything else is Bolt's, on a request
thread.

Each request to /slack/events is counted (by Slack request type and status) and timed (the ack latency).
Every request gets one access-log line (method, path, status, type, duration, Slack event id): at INFO when
it failed (status >= 400) or took longer than `slow_seconds` (`DRILL_SLOW_REQUEST_MS`), at DEBUG otherwise,
so a healthy bot's log is not one line per Slack event and its masking filter runs only on lines written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

import uvicorn
from a2wsgi import WSGIMiddleware
from prometheus_client import make_wsgi_app
from slack_bolt import App, BoltRequest
from slack_sdk.signature import SignatureVerifier
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.errors import ConfigError, RetryLater
from bot.intake import AnswerIntake
from bot.logs import bind
from bot.metrics import Metrics, request_type

__all__ = [
    "BODY_SECONDS",
    "HEADER_SECONDS",
    "MAX_BODY_BYTES",
    "REQUEST_THREADS",
    "HttpServer",
    "Listener",
    "SlackEdge",
    "build_server",
    "metrics_app",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Slack sends a request in one go within milliseconds; 10 s is generous for a slow network and short
# enough that a slow client's connection does not outlive a few of its own trickled header lines.
HEADER_SECONDS = 10.0
BODY_SECONDS = 10.0
REQUEST_THREADS = 16
PROBE_THREADS = 2
# SIGTERM: in-flight requests get this long to finish before the server closes their connections.
DRAIN_SECONDS = 5.0
BACKLOG = 1024
EVENTS_PATH = "/slack/events"
PROBES = frozenset({"/healthz", "/readyz"})
CONTENT_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Check = Callable[[], tuple[bool, dict[str, Any]]]
# Given an Events API `message` event: may a listener act on it? False: acknowledged at the edge.
MessageFilter = Callable[[Mapping[str, Any]], bool]
# Given a slash command's fields: queue its answer (through its response_url); the edge acknowledges it.
CommandHandOff = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class _Reply:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    kind: str = "other"
    event_id: str | None = None
    close: bool = False  # the request body was not (fully) read: the connection cannot be reused


class _ClientGone(Exception):
    """The client disconnected before its request body arrived: there is no one to answer."""


class SlackEdge:
    """The Slack-facing ASGI app: probes, checks, then Bolt's `App.dispatch` on a bounded thread pool."""

    def __init__(
        self,
        app: App,
        *,
        signing_secret: str,
        health: Check,
        ready: Check | None = None,
        metrics: Metrics | None = None,
        slow_seconds: float = 0.5,
        body_seconds: float = BODY_SECONDS,
        threads: int = REQUEST_THREADS,
        messages: MessageFilter | None = None,
        answers: AnswerIntake | None = None,
        commands: Mapping[str, CommandHandOff] | None = None,
    ) -> None:
        self.app = app
        self.messages = messages
        self.answers = answers
        self.commands = dict(commands or {})
        self.verifier = SignatureVerifier(signing_secret)
        self.health = health
        self.ready = ready
        self.metrics = metrics
        self.slow_seconds = slow_seconds
        self.body_seconds = body_seconds
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="request")
        self.probe_pool = ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="probe")

    def close(self) -> None:
        """Let the pools' threads end once idle (the server has already drained or abandoned its requests)."""
        self.pool.shutdown(wait=False)
        self.probe_pool.shutdown(wait=False)
        if self.answers is not None:
            self.answers.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        started = time.perf_counter()
        method = str(scope.get("method", "GET"))
        path = str(scope.get("path", ""))
        headers = _headers(scope)
        retry = headers["x-slack-retry-num"][:8] if headers.get("x-slack-retry-num") else None
        loop = asyncio.get_running_loop()
        try:
            if path == EVENTS_PATH:
                reply = await self._events(receive, method, headers, scope, loop)
            elif path in PROBES and method in ("GET", "HEAD"):
                reply = await loop.run_in_executor(self.probe_pool, self._probe, path)
            else:
                reply = _Reply(404, "not found")
        except _ClientGone:
            log.debug("%s %s: the client went away before sending its body", method, path[:200])
            return
        except Exception:  # a bug of ours: answer 500 (Slack retries) and say where
            log.exception("%s %s failed in the HTTP edge", method, path[:200])
            reply = _Reply(500, "internal error")
        seconds = time.perf_counter() - started
        if path == EVENTS_PATH and self.metrics is not None:
            self.metrics.request(reply.kind, reply.status, seconds)
        self._access_log(method, path, reply, seconds, retry)
        await _send(send, reply)

    async def _events(
        self, receive: Receive, method: str, headers: dict[str, str], scope: Scope, loop: asyncio.AbstractEventLoop
    ) -> _Reply:
        if method != "POST":
            return _Reply(405, "method not allowed")
        raw = await self._read_body(receive, headers)
        if isinstance(raw, _Reply):
            return raw
        # On the loop (an HMAC over at most 1 MB): unsigned requests never take a request thread, so a flood
        # of them cannot queue ahead of Slack's.
        if not self._signed(raw, headers):
            return _Reply(401, "invalid signature")
        if self.commands:
            command = _slash_command(raw, headers)
            if command is not None and command["command"] in self.commands:
                # Acknowledged here: the answer is queued for the bot's executor (it arrives through the
                # command's response_url), so the ack never waits for a request thread behind that work.
                event_id = _slack_event_id(command)
                with bind(slack_event_id=event_id):
                    self.commands[command["command"]](command)
                return _Reply(200, "", kind="command", event_id=event_id)
        if self.messages is not None:
            envelope = _message_event(raw, headers)
            if envelope is not None:
                body, event = envelope
                if not self.messages(event):
                    return _Reply(200, "", kind="event", event_id=_slack_event_id(body))
                if self.answers is not None and self.answers.wants(event):
                    return await self._answer(body, event)
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        return await loop.run_in_executor(self.pool, self._slack, raw, headers, query)

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes | _Reply:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _Reply(413, "request body too large", close=True)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = bytes(message.get("body", b""))
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        return _Reply(413, "request body too large", close=True)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            return _Reply(408, f"request body not received within {self.body_seconds:g} s", close=True)

    async def _answer(self, body: dict[str, Any], event: dict[str, Any]) -> _Reply:
        """A person's thread reply, stored through the answer intake before the 200 (no request thread, no
        Bolt: the intake runs the same answer path as the Bolt listener, in groups)."""
        assert self.answers is not None
        outcome = await self.answers.submit(event)
        event_id = _slack_event_id(body)
        if isinstance(outcome, Exception):
            with bind(slack_event_id=event_id):
                if isinstance(outcome, RetryLater):
                    log.warning("reply %s in %s not stored yet, Slack will redeliver it: %s", event.get("ts"),
                                event.get("channel"), outcome)
                else:
                    log.error("could not store reply %s in %s", event.get("ts"), event.get("channel"),
                              exc_info=outcome)
            return _Reply(500, "not stored; Slack redelivers it", kind="event", event_id=event_id)
        log.debug("message %s in %s: %s", event.get("ts"), event.get("channel"), outcome)
        return _Reply(200, "", kind="event", event_id=event_id)

    def _probe(self, path: str) -> _Reply:
        check = self.health if path == "/healthz" else self.ready
        if check is None:
            return _Reply(404, "not found")
        ok, body = check()
        return _Reply(200 if ok else 503, json.dumps(body), "application/json")

    def _signed(self, raw: bytes, headers: dict[str, str]) -> bool:
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp.isdigit() or not signature:
            return False
        try:
            return self.verifier.is_valid(raw, timestamp, signature)
        except (ValueError, UnicodeDecodeError):  # slack-sdk decodes the body: not UTF-8 cannot be Slack's
            return False

    def _slack(self, raw: bytes, headers: dict[str, str], query: str) -> _Reply:
        """The parse checks and the dispatch of a signed request, on a request thread."""
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in CONTENT_TYPES:
            return _Reply(415, "expected application/json or application/x-www-form-urlencoded")
        bolt_headers: dict[str, str | Sequence[str]] = dict(headers)
        try:
            request = BoltRequest(body=raw.decode("utf-8"), query=query, headers=bolt_headers)
        except Exception:  # undecodable or unparseable: the sender's fault, never ours
            return _Reply(400, "cannot parse the request body")
        if not _well_formed(request.body):
            return _Reply(400, "malformed Slack payload")
        kind, event_id = request_type(request.body), _slack_event_id(request.body)
        retry = headers["x-slack-retry-num"][:8] if headers.get("x-slack-retry-num") else None
        try:
            with bind(slack_event_id=event_id, slack_retry_num=retry):
                response = self.app.dispatch(request)
        except Exception:  # Bolt could not even route it: a shape no real Slack request has
            log.warning("could not dispatch a signed request", exc_info=True)
            return _Reply(400, "malformed Slack payload", kind=kind, event_id=event_id)
        content_type = response.headers.get("content-type", ["text/plain;charset=utf-8"])[0]
        return _Reply(response.status, response.body, content_type, kind=kind, event_id=event_id)

    def _access_log(self, method: str, path: str, reply: _Reply, seconds: float, retry: str | None) -> None:
        level = logging.INFO if reply.status >= 400 or seconds >= self.slow_seconds else logging.DEBUG
        if not log.isEnabledFor(level):
            return
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


def _slash_command(raw: bytes, headers: dict[str, str]) -> dict[str, Any] | None:
    """A signed slash command's fields (as Bolt parses them); None for anything else."""
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    if b"command=" not in raw:
        return None
    try:
        fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None  # the request thread answers 400, as for any unparseable body
    if "payload" in fields or not fields.get("command"):
        return None
    return fields


def _message_event(raw: bytes, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The envelope and the event of a signed Events API `message` event, parsed on the loop; None for
    anything else (dispatched as usual: the request thread answers 400 if it cannot be parsed)."""
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return None
    # The cheap test first: most of a busy channel's traffic is messages, but not every request is one.
    if b'"message"' not in raw:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not _well_formed(body) or body.get("type") != "event_callback":
        return None
    event = body.get("event")
    if not isinstance(event, dict) or event.get("type") != "message":
        return None
    return body, event


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


def _headers(scope: Scope) -> dict[str, str]:
    """Header names lower-cased (as ASGI gives them); a repeated header's values joined with commas."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key, text = bytes(name).decode("latin-1"), bytes(value).decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


async def _send(send: Send, reply: _Reply) -> None:
    data = reply.body.encode("utf-8")
    headers = [(b"content-type", reply.content_type.encode("latin-1")), (b"content-length", str(len(data)).encode())]
    if reply.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def metrics_app(metrics: Metrics) -> ASGIApp:
    """prometheus-client's own WSGI app over this bot's registry, scraped on a thread of its own (the
    database gauges query the database; a slow one must not stall the event loop)."""
    return cast(ASGIApp, WSGIMiddleware(make_wsgi_app(metrics.registry), workers=1))


# -- the server -------------------------------------------------------------------------------------


class _HeadDeadline(HttpToolsProtocol):
    """uvicorn's HTTP protocol plus a deadline for the request head.

    uvicorn waits for a request's line and headers as long as a client keeps the connection open; here a
    connection that has not completed its head `header_seconds` after connecting (or after starting its
    next request) is closed.
    """

    header_seconds = HEADER_SECONDS
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_seconds, self._head_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_seconds, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # still answering an earlier request: close right after it
        elif not self.transport.is_closing():
            self.transport.close()


@dataclass(frozen=True)
class Listener:
    """One port the server listens on: `setting` names where its address comes from (for errors)."""

    name: str
    app: ASGIApp
    host: str
    port: int
    setting: str


class HttpServer:
    """uvicorn serving one or more listeners on one event loop in a background thread.

    `start()` binds every port first (port 0 picks a free one; a port in use is a ConfigError naming the
    setting) and returns once all of them accept connections; `stop()` stops accepting at once, lets
    in-flight requests finish (up to `drain_seconds`) and closes.
    """

    def __init__(
        self, *listeners: Listener, header_seconds: float = HEADER_SECONDS, drain_seconds: float = DRAIN_SECONDS
    ) -> None:
        if not listeners:
            raise ValueError("an HttpServer needs at least one listener")
        self.listeners = listeners
        self.header_seconds = header_seconds
        self.drain_seconds = drain_seconds
        self.addresses: dict[str, tuple[str, int]] = {}  # listener name -> (host, port) bound
        self.ports: dict[str, int] = {}
        self._servers: list[uvicorn.Server] = []
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The first listener's port (the Slack port)."""
        return self.ports[self.listeners[0].name]

    def start(self) -> None:
        sockets: list[socket.socket] = []
        try:
            for listener in self.listeners:
                sockets.append(_bind(listener))
        except ConfigError:
            for sock in sockets:
                sock.close()
            raise
        for listener, sock in zip(self.listeners, sockets, strict=True):
            host, port = sock.getsockname()[:2]
            self.addresses[listener.name] = (str(host), int(port))
            self.ports[listener.name] = int(port)
        protocol = type("HeadDeadline", (_HeadDeadline,), {"header_seconds": self.header_seconds})
        self._servers = [
            uvicorn.Server(
                uvicorn.Config(
                    listener.app,
                    http=protocol,
                    lifespan="off",
                    access_log=False,  # ours is in SlackEdge, with the Slack request's type and id
                    log_config=None,  # drillbot configures logging (bot.logs)
                    server_header=False,
                    backlog=BACKLOG,
                    timeout_graceful_shutdown=max(1, round(self.drain_seconds)),
                )
            )
            for listener in self.listeners
        ]

        async def serve() -> None:
            await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in zip(self._servers, sockets, strict=True)))

        def run() -> None:
            with asyncio.Runner(loop_factory=_new_loop) as runner:
                runner.run(serve())

        self._thread = threading.Thread(target=run, name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not all(s.started for s in self._servers):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to drain_seconds), close."""
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.drain_seconds + 2)
        for listener in self.listeners:
            close = getattr(listener.app, "close", None)
            if callable(close):
                close()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS), as uvicorn's own `loop="auto"` chooses; else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _bind(listener: Listener) -> socket.socket:
    where = f"{listener.host}:{listener.port}"
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {where} ({listener.setting}): {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {where} ({listener.setting}): {exc.strerror or exc}") from None
    return sock


def build_server(
    edge: SlackEdge | None,
    *,
    host: str,
    port: int,
    metrics: Metrics | None = None,
    metrics_host: str = "127.0.0.1",
    metrics_port: int | None = None,
) -> HttpServer | None:
    """The Slack listener (when `edge` is given: HTTP mode) and the metrics listener (when `metrics_port`
    is set and there are metrics); None when there is nothing to serve (Socket Mode, no METRICS_PORT)."""
    listeners = []
    if edge is not None:
        listeners.append(Listener("slack", edge, host, port, "PORT"))
    if metrics is not None and metrics_port is not None:
        listeners.append(Listener("metrics", metrics_app(metrics), metrics_host, metrics_port, "METRICS_PORT"))
    return HttpServer(*listeners) if listeners else None
