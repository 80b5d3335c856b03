"""What Slack sends to the bot: really signed HTTP requests to its /slack/events, and event payloads."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlparse

from tests.fakes.workspace import CHANNEL, SIGNING_SECRET

__all__ = ["SlackSender", "reply_event"]


class SlackSender:
    """Sends really signed requests to the bot's /slack/events, like Slack does."""

    def __init__(self, base_url: str, secret: str = SIGNING_SECRET) -> None:
        self.base_url = base_url
        self.secret = secret
        self._event_counter = 0

    def headers_for(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        base = f"v0:{ts}:".encode() + body
        signature = "v0=" + hmac.new((secret or self.secret).encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    def raw(
        self,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        sign: bool = True,
        path: str = "/slack/events",
        method: str = "POST",
        timeout: float = 10,
    ) -> tuple[int, bytes]:
        all_headers = {"Content-Type": content_type}
        if sign:
            all_headers.update(self.headers_for(body))
        all_headers.update(headers or {})
        url = urlparse(self.base_url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        try:
            try:
                conn.request(method, path, body=body if method == "POST" else None, headers=all_headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (e.g. 413) and closed before reading the whole body
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.raw(b"", method="GET", path=path, sign=False)

    def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> tuple[int, bytes]:
        self._event_counter += 1
        payload = {
            "token": "legacy",
            "team_id": "T0FAKE",
            "api_app_id": "A0FAKE",
            "type": "event_callback",
            "event_id": event_id or f"Ev{self._event_counter:08d}",
            "event_time": int(time.time()),
            "event": event,
        }
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self.raw(json.dumps(payload).encode(), headers=headers)

    def command(
        self, text: str, *, user_id: str = "UASKER01", response_url: str, channel_id: str = CHANNEL
    ) -> tuple[int, bytes]:
        """A signed /interview-question; the bot acks with an empty 200 and answers to `response_url`."""
        form = {
            "token": "legacy",
            "team_id": "T0FAKE",
            "channel_id": channel_id,
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": "/interview-question",
            "text": text,
            "api_app_id": "A0FAKE",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
        return self.raw(urlencode(form).encode(), content_type="application/x-www-form-urlencoded")

    def reply(
        self,
        thread_ts: str,
        *,
        user: str,
        at: datetime | float | str | None = None,
        text: str = "my answer",
        channel: str = CHANNEL,
    ) -> None:
        """A person's reply in a drill's thread, written `at` (default: now); Slack must get a 200."""
        ts = at.timestamp() if isinstance(at, datetime) else at
        status, body = self.event(reply_event(thread_ts, user=user, ts=ts, text=text, channel=channel))
        assert status == 200, (status, body)

    def payload(self, payload: dict[str, Any]) -> tuple[int, bytes]:
        """An interactive payload (a button click, a modal submission), form-encoded as `payload=<json>`."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.raw(body, content_type="application/x-www-form-urlencoded")


def reply_event(
    thread_ts: str, *, user: str, ts: float | str | None = None, text: str = "my answer", **extra: Any
) -> dict[str, Any]:
    """A person's reply in a drill's thread, as a `message` event."""
    ts_text = f"{time.time():.6f}" if ts is None else (ts if isinstance(ts, str) else f"{ts:.6f}")
    event = {"type": "message", "channel": CHANNEL, "user": user, "text": text, "ts": ts_text,
             "thread_ts": thread_ts, "channel_type": "channel", "event_ts": ts_text}
    event.update(extra)
    return event
