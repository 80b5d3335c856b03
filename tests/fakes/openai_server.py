"""A fake OpenAI-compatible chat-completions API over real HTTP on 127.0.0.1, recording every request.

`replies` is a queue of what the next calls answer: a dict is returned as the assistant's JSON content, a
string as raw content, an int as that HTTP status, and ("sleep", seconds) delays the answer (a timeout).
With the queue empty, every key point is reported covered.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.replies: deque[Any] = deque()
        self.in_flight = 0
        self.most_in_flight = 0  # the most requests it was answering at once
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.in_flight += 1
                    fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    reply = fake.replies.popleft() if fake.replies else None
                try:
                    self._answer(body, reply)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _answer(self, body: dict[str, Any], reply: Any) -> None:
                if isinstance(reply, tuple) and reply[0] == "sleep":
                    fake.stopping.wait(reply[1])
                    reply = reply[2] if len(reply) > 2 else None
                if isinstance(reply, int):
                    self._send(reply, {"error": {"message": "scripted failure", "type": "server_error"}})
                    return
                if reply is None:
                    points = body["messages"][1]["content"].split("<key_points>\n", 1)[1].split("\n</key_points>")[0]
                    count = len([line for line in points.splitlines() if line.strip()])
                    reply = {"covered": list(range(count)), "strength": "Clear and complete.", "improve": "Go deeper."}
                content = reply if isinstance(reply, str) else json.dumps(reply)
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                })

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
