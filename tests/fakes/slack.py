"""A fake Slack Web API over real HTTP on 127.0.0.1, recording every call.

It keeps channel messages (with metadata) so `conversations.history` / `conversations.replies` answer
like Slack (newest first, in pages of `limit` with a `next_cursor`), serves `response_url` posts under /response/..., and can be scripted to fail: a status with
headers (429 + Retry-After, 500), an error body (`invalid_auth`), a delay, or "act then fail" (the
message is stored but the reply is a 500: the uncertain case). Channel membership can be scripted too:
a channel in `not_in_channel` answers reads as a public channel the bot was not invited to, one in
`unknown_channels` as a wrong ID (or a private channel the bot is not in). Both are empty by default.

Delays are never waited out longer than the test wants: lowering or removing `delays[method]` lets the
calls already waiting go on at once, and `release()` (called by `stop()`) ends every wait. The queries
below read the transcript the way the tests talk about it: the channel's top-level messages, a thread,
the reveals, the replies sent to one response_url.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakes.workspace import CHANNEL

BOT_USER_ID = "UBOTDRILL"
BOT_ID = "BBOTDRILL"
TEAM_ID = "T0FAKE"
TEAM_NAME = "Fake Workspace"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    path: str = ""
    finished: float | None = None  # time.time() once the reply was sent; None while the call is in flight


@dataclass
class Failure:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    delay: float = 0.0
    # Perform the call first (Slack did act on it), then wait `delay`, then answer with the failure, or
    # with the normal reply when status is 200 and no body is given (a slow success).
    act: bool = False


class FakeSlack:
    def __init__(self, port: int = 0) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.failures: dict[str, list[Failure]] = defaultdict(list)
        self.delays: dict[str, float] = {}
        self.invalid_tokens: set[str] = set()
        self.not_in_channel: set[str] = set()
        self.unknown_channels: set[str] = set()
        self.lock = threading.Lock()
        self._released = threading.Event()
        self._ts = 1_700_000_000.000100
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

            def do_POST(self) -> None:
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        # A short poll: stop() returns within 20 ms instead of serve_forever's default half second.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def response_url(self, name: str = "cmd") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/response/{name}"

    def start(self) -> FakeSlack:
        self.thread.start()
        return self

    def use_real_timestamps(self) -> FakeSlack:
        """Hand out message timestamps of the real clock, as Slack does (adoption searches from the start of
        the drill's day, so a bot on the real clock only finds messages with today's timestamps)."""
        with self.lock:
            self._ts = time.time()
        return self

    def release(self) -> None:
        """End every scripted wait now: delays and slow failures answer at once from here on."""
        self._released.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    # -- scripting ---------------------------------------------------------------------------------
    def fail_next(self, method: str, *failures: Failure) -> None:
        with self.lock:
            self.failures[method].extend(failures)

    # -- queries -----------------------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def methods(self) -> list[str]:
        """Every call's method, in the order they arrived."""
        with self.lock:
            return [c.method for c in self.calls]

    def posts(self, *, thread: bool | None = None, channel: str | None = None) -> list[Call]:
        """Successful chat.postMessage calls (optionally only thread replies or only top-level; one channel)."""
        found = [c for c in self.post_attempts(thread=thread, channel=channel) if c.status == 200]
        return found

    def channel_posts(self) -> list[Call]:
        """Successful chat.postMessage calls outside DMs (the drills, reveals, reminders, digests to user IDs;
        not the checklist DMs, which go to a D... channel)."""
        return [c for c in self.posts() if not str(c.params.get("channel") or "").startswith("D")]

    def post_attempts(self, *, thread: bool | None = None, channel: str | None = None) -> list[Call]:
        """Every chat.postMessage call, whatever Slack answered."""
        found = self.calls_to("chat.postMessage")
        if channel is not None:
            found = [c for c in found if c.params.get("channel") == channel]
        if thread is None:
            return found
        return [c for c in found if bool(c.params.get("thread_ts")) == thread]

    def top_level(self, channel: str = CHANNEL) -> list[dict[str, Any]]:
        """The channel's messages as Slack holds them, without thread replies (the drills), oldest first."""
        with self.lock:
            return [dict(m) for m in self.messages[channel] if not m.get("thread_ts")]

    def thread_replies(self, channel: str = CHANNEL, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Messages in threads of the channel (in one thread, given its ts), oldest first."""
        with self.lock:
            return [
                dict(m)
                for m in self.messages[channel]
                if m.get("thread_ts") and (thread_ts is None or m["thread_ts"] == thread_ts)
            ]

    def reveals(self, channel: str = CHANNEL) -> list[dict[str, Any]]:
        """Thread messages that are a drill's reveal (by their metadata)."""
        return [m for m in self.thread_replies(channel) if self.event_type(m) == "drillbot_reveal"]

    def drill_ts(self, channel: str = CHANNEL, index: int = -1) -> str:
        """The ts of a drill message in the channel (the latest by default)."""
        return str(self.top_level(channel)[index]["ts"])

    def responses(self, name: str) -> list[dict[str, Any]]:
        """What the bot posted to `response_url(name)`, oldest first."""
        suffix = f"/response/{name}"
        return [c.params for c in self.calls_to("response_url") if c.path.split("?", 1)[0] == suffix]

    def published_views(self, user: str) -> list[dict[str, Any]]:
        """The Home tabs published for `user` (views.publish), oldest first."""
        views = [c.params["view"] for c in self.calls_to("views.publish") if c.params.get("user_id") == user]
        return [json.loads(v) if isinstance(v, str) else v for v in views]

    @staticmethod
    def event_type(message: dict[str, Any]) -> str | None:
        """The metadata event type of a stored message or of chat.postMessage params."""
        return (message.get("metadata") or {}).get("event_type")

    @staticmethod
    def drill_id_of(message: dict[str, Any]) -> int:
        """The drill id in a drill or reveal message's metadata (stored message or chat.postMessage params)."""
        return int(message["metadata"]["event_payload"]["drill_id"])

    def wait_for(self, predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
        """The predicate's first truthy value; an AssertionError naming it after `timeout` seconds."""
        from tests.support.waiting import eventually

        return eventually(predicate, timeout=timeout, interval=interval)

    # -- HTTP --------------------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        params: dict[str, Any] = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        content_type = request.headers.get("Content-Type", "")
        if raw:
            if "json" in content_type:
                params.update(json.loads(raw))
            else:
                params.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
        for key in ("blocks", "metadata"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    pass
        if parsed.path.startswith("/response/"):
            method = "response_url"
        else:
            method = parsed.path.removeprefix("/api/")
        headers = {k.lower(): v for k, v in request.headers.items()}
        call = Call(method, params, headers, time.time(), path=request.path)
        with self.lock:
            self.calls.append(call)
            failure = self.failures[method].pop(0) if self.failures[method] else None
        started = time.monotonic()
        self._wait(lambda: self.delays.get(method, 0.0), started)
        if failure is not None:
            result = self._dispatch(method, params, headers) if failure.act else None
            if failure.delay:
                self._wait(lambda: failure.delay, time.monotonic())
            if result is not None and failure.status == 200 and failure.body is None:
                call.status = result[0]  # acted, then answered late but normally
                self._send(request, call, result[0], result[1], failure.headers)
                return
            call.status = failure.status
            body = failure.body if failure.body is not None else {"ok": False, "error": "fatal_error"}
            self._send(request, call, failure.status, body, failure.headers)
            return
        status, body = self._dispatch(method, params, headers)
        call.status = status
        self._send(request, call, status, body)

    def _wait(self, delay: Any, started: float) -> None:
        """Wait until `delay()` seconds have passed since `started`, re-reading it as the test changes it."""
        while not self._released.is_set():
            left = delay() - (time.monotonic() - started)
            if left <= 0:
                return
            self._released.wait(min(left, 0.02))

    def _send(
        self, request: BaseHTTPRequestHandler, call: Call, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json; charset=utf-8")
            request.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                request.send_header(key, value)
            request.end_headers()
            request.wfile.write(data)
            request.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            call.finished = time.time()

    def _next_ts(self) -> str:
        with self.lock:
            self._ts += 1.0
            return f"{self._ts:.6f}"

    def _dispatch(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if method == "response_url":
            return 200, {"ok": True}
        if token in self.invalid_tokens:
            return 200, {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return 200, {
                "ok": True,
                "url": "https://fake-workspace.slack.com/",
                "team": TEAM_NAME,
                "user": "drillbot",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
            }
        if method == "chat.postMessage":
            ts = self._next_ts()
            message = {
                "ts": ts,
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "text": params.get("text", ""),
                "blocks": params.get("blocks"),
                "metadata": params.get("metadata"),
                "thread_ts": params.get("thread_ts"),
            }
            channel = str(params.get("channel"))
            if channel.startswith("U"):  # a user ID: Slack posts in the app's DM with them (a D... channel)
                channel = "D" + channel[1:]
            with self.lock:
                self.messages[channel].append(message)
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            with self.lock:
                for message in self.messages[str(params.get("channel"))]:
                    if message["ts"] == params.get("ts"):
                        message.update(text=params.get("text", ""), blocks=params.get("blocks"))
                        return 200, {"ok": True, "ts": message["ts"], "channel": params.get("channel")}
            return 200, {"ok": False, "error": "message_not_found"}
        if method == "conversations.open":  # the app's DM with a user: D + the user ID's tail
            users = str(params.get("users") or "")
            return 200, {"ok": True, "channel": {"id": "D" + users[1:]}}
        if method in ("conversations.history", "conversations.replies"):
            if params.get("channel") in self.unknown_channels:
                return 200, {"ok": False, "error": "channel_not_found"}
            if params.get("channel") in self.not_in_channel:
                return 200, {"ok": False, "error": "not_in_channel"}
            oldest = float(params.get("oldest") or 0)
            with self.lock:
                messages = [m for m in self.messages[str(params.get("channel"))] if float(m["ts"]) >= oldest]
            if method == "conversations.replies":
                messages = [m for m in messages if m["ts"] == params.get("ts") or m.get("thread_ts") == params.get("ts")]
            else:
                messages = [m for m in messages if not m.get("thread_ts")]
            include_meta = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
            out = [m if include_meta else {k: v for k, v in m.items() if k != "metadata"} for m in reversed(messages)]
            # Pages as Slack cuts them: `limit` per page (100 by default), an opaque cursor to the next one.
            limit = int(params.get("limit") or 100)
            start = int(str(params.get("cursor") or "page:0").removeprefix("page:"))
            page, more = out[start : start + limit], start + limit < len(out)
            body: dict[str, Any] = {"ok": True, "messages": page, "has_more": more}
            if more:
                body["response_metadata"] = {"next_cursor": f"page:{start + limit}"}
            return 200, body
        if method == "apps.connections.open":
            return 200, {"ok": True, "url": "ws://127.0.0.1:9/socket"}  # nothing listens: offline test
        if method in ("chat.postEphemeral", "views.open", "views.publish", "views.update", "chat.delete"):
            return 200, {"ok": True}
        return 200, {"ok": False, "error": "unknown_method"}
