"""Slow clients cannot take the bot offline (issue 16), on `drillbot run --http` as a subprocess.

64 connections each send `POST /slack/events HTTP/1.1` and one header line, then one more header line
every 2 s, and never finish (slowloris). While all 64 are still connected, really signed thread replies are
acknowledged within Slack's 3 s and counted (requests and recorded answers, in the metrics on
METRICS_PORT), and /healthz answers within 3 s. With the old server (cheroot, 16 worker threads) every
one of these requests timed out.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storage.models import DrillStatus
from tests.fakes.events import SlackSender, reply_event
from tests.fakes.workspace import CHANNEL

pytestmark = pytest.mark.subprocess

SLOW_CLIENTS = 64
TRICKLE_SECONDS = 2.0
BUDGET = 3.0  # Slack's limit for an acknowledgement


class SlowClients:
    """SLOW_CLIENTS connections with an unfinished request head, one more header line every 2 s."""

    def __init__(self, port: int) -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(SLOW_CLIENTS)]
        for sock in self.socks:
            sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        self.stop = threading.Event()
        self.trickled = threading.Event()  # every client has sent one more header line since it connected
        self.thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        line = 0
        while not self.stop.wait(TRICKLE_SECONDS):
            line += 1
            for sock in self.socks:
                with contextlib.suppress(OSError):
                    sock.sendall(f"X-Slow-{line}: a\r\n".encode())
            self.trickled.set()

    def still_open(self) -> int:
        """How many have not been answered or closed by the server."""
        readable, _, _ = select.select(self.socks, [], [], 0)
        return len(self.socks) - len(readable)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.socks:
            sock.close()


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = SlackSender(f"http://127.0.0.1:{port}").get("/metrics")
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_slow_clients_do_not_stop_slack_requests_or_probes(launch_run, bot_env, fake_slack, db):
    env = bot_env(drill_schedule="* * * * *")  # due now: the bot posts a drill as it starts
    bot = launch_run(env=env, name="slow-clients")
    sender = SlackSender(f"http://127.0.0.1:{bot.port}")
    metrics_port = bot.metrics_port

    def opened() -> str | None:
        return next((d.ts for d in db.drills(env["DATABASE_URL"]) if d.status == DrillStatus.OPEN), None)

    drill_ts = fake_slack.wait_for(opened, timeout=15)
    before = samples(metrics_port)

    def timed_reply(i: int) -> tuple[int, float]:
        started = time.monotonic()
        status, _ = SlackSender(sender.base_url).event(
            reply_event(drill_ts, user=f"USLOW{i:04d}"), event_id=f"EvSLOW{i:06d}"
        )
        return status, time.monotonic() - started

    def timed_health() -> tuple[int, float]:
        started = time.monotonic()
        status, _ = sender.get("/healthz")
        return status, time.monotonic() - started

    slow = SlowClients(bot.port)
    try:
        assert slow.trickled.wait(TRICKLE_SECONDS * 3)  # every slow client has trickled a line: alive to any idle timeout
        assert slow.still_open() == SLOW_CLIENTS
        health = [timed_health()]
        replies = [timed_reply(i) for i in range(4)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            replies += list(pool.map(timed_reply, range(4, 12)))
        health.append(timed_health())
        # The measurement counts only if the slow clients were all still connected throughout.
        assert slow.still_open() == SLOW_CLIENTS, "the slow clients had been dropped before the requests were sent"
    finally:
        slow.close()

    assert all(status == 200 and seconds < BUDGET for status, seconds in health), health
    assert all(status == 200 and seconds < BUDGET for status, seconds in replies), replies
    # Counted: every request, and every reply recorded as an answer.
    after = samples(metrics_port)
    key = ("drillbot_requests_total", (("status", "200"), ("type", "event")))
    assert after.get(key, 0) - before.get(key, 0) == len(replies)
    answers = ("drillbot_answers_recorded_total", (("channel", CHANNEL),))
    assert after.get(answers, 0) - before.get(answers, 0) == len(replies)
    # /metrics is not on the Slack port.
    assert sender.get("/metrics")[0] == 404

    code, _seconds = bot.sigterm()
    logs = bot.logs()
    assert code == 0, logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    assert "will be unused" not in logs  # Bolt's client/token warning is gone
    assert f"serving metrics on 127.0.0.1:{metrics_port}" in logs
