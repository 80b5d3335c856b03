"""The HTTP edge and its server (bot/web.py): deadlines, drain, unhandled requests, start-up noise.

The request head deadline and the drain are tested on `HttpServer` with a tiny ASGI app (short deadlines);
everything about Slack requests on the real bot over real HTTP with really signed requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.app import build_app
from bot.web import MAX_BODY_BYTES, HttpServer, Listener, Message, Receive, Scope, Send, SlackEdge
from tests.conftest import BOT_TOKEN, SlackSender, reply_event

NEVER = "0 0 1 1 *"


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200 after `?sleep=<seconds>`; records nothing."""
    if scope["type"] != "http":
        return
    query = bytes(scope.get("query_string", b"")).decode()
    if query.startswith("sleep="):
        await asyncio.sleep(float(query.removeprefix("sleep=")))
    message: Message = await receive()
    while message.get("more_body"):
        message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"hi"})


@pytest.fixture
def tiny_server() -> Iterator[HttpServer]:
    server = HttpServer(Listener("test", hello, "127.0.0.1", 0, "PORT"), header_seconds=0.5, drain_seconds=3)
    server.start()
    yield server
    server.stop()


def closed_after(sock: socket.socket, *, limit: float, trickle: bytes | None = None) -> float:
    """Seconds until the server closes `sock` (trickling `trickle` every 0.1 s meanwhile); fails past `limit`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if trickle is not None:
            try:
                sock.sendall(trickle)
            except OSError:
                return time.monotonic() - started
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                return time.monotonic() - started
    pytest.fail(f"the connection was still open after {limit} s")


def get(port: int, path: str = "/") -> tuple[int, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), time.monotonic() - started


# -- the request head deadline ----------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(tiny_server):
    with socket.create_connection(("127.0.0.1", tiny_server.port), timeout=5) as idle:
        seconds = closed_after(idle, limit=3)
    assert 0.4 <= seconds < 2.5, seconds


def test_a_head_trickled_line_by_line_is_closed_at_the_deadline_and_others_are_served(tiny_server):
    with socket.create_connection(("127.0.0.1", tiny_server.port), timeout=5) as slow:
        slow.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")
        assert get(tiny_server.port)[0] == 200  # served meanwhile
        seconds = closed_after(slow, limit=3, trickle=b"X-Slow: a\r\n")
    assert 0.4 <= seconds < 2.5, seconds


def test_the_next_request_on_a_kept_alive_connection_has_a_head_deadline_too(tiny_server):
    with socket.create_connection(("127.0.0.1", tiny_server.port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        # Idle past the head deadline (0.5 s) but within uvicorn's 5 s keep-alive: the server must keep the
        # connection open (recv times out: nothing sent, not closed), its next request's clock not yet started.
        conn.settimeout(0.8)
        with pytest.raises(TimeoutError):
            conn.recv(1)
        conn.settimeout(5)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the next request, never finished
        seconds = closed_after(conn, limit=3, trickle=b"X-Slow: a\r\n")
    assert seconds < 2.5, seconds


def test_stop_refuses_new_connections_and_lets_the_in_flight_request_finish(tiny_server):
    results: list[tuple[int, float]] = []
    in_flight = threading.Thread(target=lambda: results.append(get(tiny_server.port, "/?sleep=1.5")))
    in_flight.start()
    time.sleep(0.3)
    stopped = threading.Thread(target=tiny_server.stop)
    stopped.start()
    time.sleep(0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", tiny_server.port), timeout=1).close()
    in_flight.join(timeout=5)
    stopped.join(timeout=5)
    assert results and results[0][0] == 200 and results[0][1] >= 1.4, results
    assert not stopped.is_alive()


def test_a_port_in_use_is_one_line_naming_the_setting():
    from bot.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HttpServer(Listener("metrics", hello, "127.0.0.1", port, "METRICS_PORT"))
        with pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{port} \(METRICS_PORT\)"):
            server.start()


# -- the request body -------------------------------------------------------------------------------


def edge_of(bot: Any) -> SlackEdge:
    edge = bot.server.listeners[0].app
    assert isinstance(edge, SlackEdge)
    return edge


def test_a_body_that_does_not_arrive_in_time_is_408_and_the_bot_keeps_serving(start_bot, fake_slack):
    bot, slack = start_bot(drill_schedule=NEVER)
    edge_of(bot).body_seconds = 0.5
    body = json.dumps({"type": "event_callback", "event": reply_event("1.000001", user="USLOW")}).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in slack.headers_for(body).items())
    with socket.create_connection(("127.0.0.1", bot.server.port), timeout=5) as conn:
        conn.sendall(
            f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10]
        )
        assert slack.event(reply_event("1.000002", user="UFAST"))[0] == 200  # served while that body hangs
        started = time.monotonic()
        answer = conn.recv(65536)
        waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert b"connection: close" in answer.lower()
        assert closed_after(conn, limit=2) < 2
    assert waited < 2, waited
    assert slack.get("/healthz")[0] == 200


def test_a_chunked_body_over_one_megabyte_is_413(start_bot, fake_slack):
    _bot, slack = start_bot(drill_schedule=NEVER)
    body = json.dumps({"type": "event_callback", "pad": "y" * MAX_BODY_BYTES}).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in slack.headers_for(body).items())
    with socket.create_connection(("127.0.0.1", _bot.server.port), timeout=10) as conn:
        conn.sendall(
            f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for i in range(0, len(body), 65536):
                chunk = body[i : i + 65536]
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # answered and closed before the whole body was sent
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert slack.get("/healthz")[0] == 200


# -- requests nobody handles, start-up noise --------------------------------------------------------


def test_requests_no_listener_handles_are_acknowledged_without_a_warning(start_bot, fake_slack, caplog):
    _bot, slack = start_bot(drill_schedule=NEVER)
    caplog.set_level(logging.DEBUG)
    unknown_event = {"type": "reaction_added", "user": "U1", "reaction": "tada", "event_ts": "1.0"}
    old_button = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T0FAKE"},
                  "actions": [{"action_id": "a_button_from_an_old_version", "type": "button"}], "trigger_id": "t1"}
    shortcut = {"type": "shortcut", "callback_id": "nobody_listens", "user": {"id": "U1"}, "trigger_id": "t2"}

    assert slack.event(unknown_event)[0] == 200
    for payload in (old_button, shortcut):
        form = "payload=" + json.dumps(payload)
        assert slack.raw(form.encode(), content_type="application/x-www-form-urlencoded")[0] == 200

    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("bot")]
    assert not noisy, [r.getMessage() for r in noisy]


def test_no_client_and_token_warning_when_the_token_is_in_the_environment(make_settings, caplog, monkeypatch):
    from bot.runtime import build_runtime

    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)  # as in production: Bolt reads it too
    runtime = build_runtime(make_settings(drill_schedule=NEVER))
    caplog.set_level(logging.DEBUG)
    try:
        build_app(runtime.settings, runtime.service, client=runtime.client)
    finally:
        runtime.service.close()
        runtime.db.dispose()
    assert not [r for r in caplog.records if "will be unused" in r.getMessage()]
    assert not logging.getLogger("bot.bolt").filters  # silenced for the construction only


def test_slack_sender_still_reaches_the_probes(start_bot):
    bot, _slack = start_bot(drill_schedule=NEVER)
    sender = SlackSender(f"http://127.0.0.1:{bot.server.port}")
    for method in ("GET", "HEAD"):
        status, body = sender.raw(b"", method=method, path="/healthz", sign=False)
        assert status == 200, method
        assert (json.loads(body)["database"] == "ok") if method == "GET" else body == b""
