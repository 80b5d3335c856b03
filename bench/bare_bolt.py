"""The baseline server: a bare Bolt app behind the same edge and server as drillbot, or as Bolt documents it.

`--server drillbot` (the default): bot.web.SlackEdge (size, signature and parse checks, Bolt's dispatch on
16 request threads) + bot.web.HttpServer (uvicorn) in front of a slack_bolt.App whose listeners do
nothing: a no-op `message` listener and an `/interview-question` listener that only acks. With
`--store FILE` the `message` listener stores the reply in SQLite first (one INSERT + COMMIT, one
connection behind a lock): the floor for any server that stores before acking. `--config tuned` builds
the App as bot/app.py did before the edge became the only signature check (process_before_response=True,
a 16-thread listener executor, request verification on, the token verified against the fake Slack at
start); `--config default` leaves Bolt's defaults (process_before_response=False: the listener runs on
Bolt's executor and the request thread polls for the ack every 10 ms, slack_bolt/listener/thread_runner.py).

`--server bolt-asgi`: the same App served the way Bolt documents for production with uvicorn: its ASGI
adapter (slack_bolt.adapter.asgi.SlackRequestHandler, which runs `App.dispatch` on the event loop itself)
under plain `uvicorn.run`, one process, plus GET /healthz.

Usage: python bench/bare_bolt.py --port N --slack-url http://127.0.0.1:M/api/ [--config tuned|default]
       [--store FILE] [--server drillbot|bolt-asgi] [--threads N]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slack_bolt import Ack, App  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from bot.web import HttpServer, Listener, SlackEdge  # noqa: E402
from tests.conftest import BOT_TOKEN, SIGNING_SECRET  # noqa: E402

COMMAND = "/interview-question"


class Store:
    """The least a durable ack needs: one INSERT and COMMIT per reply into SQLite (WAL, synchronous=NORMAL,
    like drillbot), one connection behind a lock. A floor for any design that stores before the ack."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS replies (channel TEXT, message_ts TEXT, user_id TEXT, text TEXT,"
            " PRIMARY KEY (channel, message_ts))"
        )
        self.lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?)",
                (event.get("channel"), event.get("ts"), event.get("user"), event.get("text")),
            )
            self.conn.execute("COMMIT")


def build(slack_url: str, config: str, store: Store | None = None) -> App:
    client = WebClient(token=BOT_TOKEN, base_url=slack_url)
    if config == "tuned":
        app = App(
            client=client,
            signing_secret=SIGNING_SECRET,
            process_before_response=True,
            request_verification_enabled=True,
            listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="listener"),
            logger=logging.getLogger("bare.bolt"),
        )
    else:
        app = App(client=client, signing_secret=SIGNING_SECRET, logger=logging.getLogger("bare.bolt"))

    if store is None:

        @app.event("message")
        def on_message() -> None:
            return None

    else:

        @app.event("message")
        def store_message(event: dict[str, Any]) -> None:
            store.add(event)

    @app.command(COMMAND)
    def on_command(ack: Ack) -> None:
        ack()

    return app


def bolt_asgi(app: App) -> Any:
    """Bolt's own ASGI adapter, plus the /healthz the benchmark waits for."""
    from slack_bolt.adapter.asgi import SlackRequestHandler

    handler = SlackRequestHandler(app)

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            await handler(scope, receive, send)

    return serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--slack-url", required=True)
    parser.add_argument("--config", choices=("tuned", "default"), default="tuned")
    parser.add_argument("--store", default=None, help="store every message in this SQLite file before the ack")
    parser.add_argument("--server", choices=("drillbot", "bolt-asgi"), default="drillbot")
    parser.add_argument("--threads", type=int, default=None, help="experiment: SlackEdge request threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build(args.slack_url, args.config, Store(args.store) if args.store else None)

    def health() -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ok"}

    if args.server == "bolt-asgi":
        import uvicorn

        uvicorn.run(bolt_asgi(app), host=args.host, port=args.port, log_level="warning", access_log=False)
        return
    threads = {"threads": args.threads} if args.threads else {}
    edge = SlackEdge(app, signing_secret=SIGNING_SECRET, health=health, **threads)
    server = HttpServer(Listener("slack", edge, args.host, args.port, "--port"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
