"""Slow clients (slowloris) against `drillbot run --http`: is the bot still serving Slack?

    .venv/bin/python bench/slowloris.py [--quick] [--json out.json]

`drillbot run --http` runs as a subprocess (SQLite in a temp dir, the fake Slack in another process) with
an open drill. Two phases, each `--seconds` long (--quick: 6 s):

1. quiet: nothing but the probes;
2. attack: slow clients (64; --quick: 16) each open a connection, send `POST /slack/events HTTP/1.1` and one
   header line, then one more header line every 2 s, never finishing the request. A client whose
   connection the server closes opens a new one at once, as an attacker would (counted as "reopened").

Throughout, two probes run side by side, one request at a time each, 0.25 s apart, with a 5 s client
timeout: `GET /healthz`, and a really signed thread reply to the open drill from a new user each time.
Afterwards the database must hold every reply that was acknowledged (acknowledged = counted). Goals
(issue 16): during the attack, every signed reply acknowledged within 3 s and stored, every /healthz
within 3 s.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    FakeSlackProcess,
    Report,
    bot_env,
    drillbot_server,
    event_body,
    parse_args,
    pct,
    reply_event,
    sign,
    workdir,
)
from bench.ingest import post_drills  # noqa: E402

CHANNEL = "CSLOWLORIS"
BUDGET = 3.0  # Slack's limit for an acknowledgement
PROBE_TIMEOUT = 5.0
PROBE_INTERVAL = 0.25
TRICKLE_SECONDS = 2.0


class SlowClients:
    """`count` connections that each send a request line and then one header line every 2 s, forever."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.stop = threading.Event()
        self.reopened = 0
        self.open_failures = 0
        self.thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=PROBE_TIMEOUT)
            sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sock.setblocking(False)
            return sock
        except OSError:
            self.open_failures += 1
            return None

    def _run(self) -> None:
        socks: list[socket.socket | None] = [self._open() for _ in range(self.count)]
        line = 0
        while not self.stop.is_set():
            line += 1
            for i, sock in enumerate(socks):
                if sock is None:
                    socks[i] = self._open()
                    continue
                try:
                    sock.sendall(f"X-Slow-{line}: {'a' * 8}\r\n".encode())
                except OSError:
                    sock.close()
                    socks[i] = self._open()
                    self.reopened += 1
            deadline = time.monotonic() + TRICKLE_SECONDS
            while not self.stop.is_set() and time.monotonic() < deadline:
                live = [s for s in socks if s is not None]
                readable, _, _ = select.select(live, [], [], 0.1) if live else ([], [], [])
                for sock in readable:  # the server answered (e.g. 408) or closed: reopen, as an attacker would
                    with contextlib.suppress(OSError):
                        sock.recv(65536)
                    sock.close()
                    socks[socks.index(sock)] = self._open()
                    self.reopened += 1
        for sock in socks:
            if sock is not None:
                sock.close()

    def __enter__(self) -> SlowClients:
        self.thread.start()
        time.sleep(0.5)  # every connection open before the measurement starts
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


class Probe:
    """One request at a time, PROBE_INTERVAL apart; records (latency or None on timeout/error, status)."""

    def __init__(self, name: str, port: int, request: object) -> None:
        self.name = name
        self.port = port
        self.request = request
        self.results: list[tuple[float | None, int, str]] = []

    def once(self, index: int) -> None:
        method, path, body, headers = self.request(index)  # type: ignore[operator]
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            self.results.append((time.perf_counter() - started, response.status, ""))
        except (OSError, http.client.HTTPException) as exc:
            self.results.append((None, 0, exc.__class__.__name__))
        finally:
            conn.close()

    def run(self, seconds: float, start_index: int) -> threading.Thread:
        def loop() -> None:
            end = time.monotonic() + seconds
            i = start_index
            while time.monotonic() < end:
                self.once(i)
                i += 1
                time.sleep(PROBE_INTERVAL)

        thread = threading.Thread(target=loop, name=f"probe-{self.name}", daemon=True)
        thread.start()
        return thread


def stored_users(db_path: Path, prefix: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT DISTINCT user_id FROM answers WHERE channel = ? AND user_id LIKE ?", (CHANNEL, prefix + "%")
        ).fetchall()
    return {r[0] for r in rows}


def main() -> int:
    parser_args = parse_args(__doc__ or "")
    quick = parser_args.quick
    slow = 16 if quick else 64
    seconds = 6.0 if quick else 30.0
    report = Report("Slow clients (slowloris): /healthz and signed replies", quick)
    rows: list[list[str]] = []
    summary: dict[str, dict[str, float]] = {}
    with workdir("slowloris") as tmp, FakeSlackProcess(tmp) as fake:
        db_path = tmp / "drills.db"
        database_url = f"sqlite:///{db_path}"
        env = bot_env(slack_url=fake.url, database_url=database_url)
        with drillbot_server(env, tmp) as bot:
            bot.start().wait_healthy()
            drill_ts = post_drills(fake.url, database_url, [CHANNEL])[CHANNEL]

            def healthz(_i: int) -> tuple[str, str, None, dict[str, str]]:
                return "GET", "/healthz", None, {}

            def reply(phase: str) -> object:
                def build(i: int) -> tuple[str, str, bytes, dict[str, str]]:
                    ts = f"{time.time() - 30:.6f}"
                    event = reply_event(drill_ts, user=f"U{phase}{i:06d}", ts=ts, channel=CHANNEL, text="answer")
                    body, headers = sign([event_body(event, f"Ev{phase}{i:08d}")])[0]
                    return "POST", "/slack/events", body, headers

                return build

            attackers = None
            for phase, tag in (("quiet", "QUIET"), ("attack", "SLOWL")):
                probes = [Probe("GET /healthz", bot.port, healthz), Probe("signed reply", bot.port, reply(tag))]
                if phase == "attack":
                    attackers = SlowClients(bot.port, slow).__enter__()
                try:
                    for thread in [p.run(seconds, 0) for p in probes]:
                        thread.join()
                finally:
                    if attackers is not None and phase == "attack":
                        attackers.__exit__()
                acked = {f"U{tag}{i:06d}" for i, r in enumerate(probes[1].results) if r[1] == 200}
                kept = stored_users(db_path, f"U{tag}")
                for probe in probes:
                    times = [t for t, status, _ in probe.results if t is not None and status == 200]
                    failed = [r for r in probe.results if r[0] is None or r[1] != 200]
                    within = sum(1 for t, status, _ in probe.results if t is not None and status == 200 and t < BUDGET)
                    n = len(probe.results)
                    counted = f"{len(acked & kept)}/{len(acked)}" if probe.name == "signed reply" else "-"
                    rows.append([
                        phase, probe.name, str(n), f"{within}/{n}",
                        f"{pct(times, 50) * 1000:.1f}" if times else "-",
                        f"{pct(times, 99) * 1000:.1f}" if times else "-",
                        f"{max(times) * 1000:.1f}" if times else "-",
                        str(len(failed)) + (f" ({failed[0][2] or failed[0][1]})" if failed else ""),
                        counted,
                    ])
                    summary[f"{phase} {probe.name}"] = {
                        "requests": n, "within_3s": within, "failed": len(failed),
                        "p50_ms": pct(times, 50) * 1000 if times else float("nan"),
                        "max_ms": max(times) * 1000 if times else float("nan"),
                        "stored": float(len(acked & kept)), "acked": float(len(acked)),
                    }
            reopened = attackers.reopened if attackers else 0
            open_failures = attackers.open_failures if attackers else 0
            alive = bot.popen is not None and bot.popen.poll() is None
    report.add(f"{slow} slow clients, each trickling one header line every {TRICKLE_SECONDS:.0f} s; "
               f"{seconds:.0f} s per phase; probes one at a time, {PROBE_INTERVAL} s apart, "
               f"{PROBE_TIMEOUT:.0f} s client timeout. Slow connections reopened after the server closed them: "
               f"{reopened}; slow connections that could not be opened: {open_failures}; bot still running: {alive}.")
    report.table(("phase", "probe", "requests", "200 within 3 s", "p50 ms", "p99 ms", "max ms", "failed",
                  "acked and stored"), rows)
    report.metrics.update(phases=summary, slow_clients=slow, reopened=reopened, open_failures=open_failures)
    health = summary["attack GET /healthz"]
    replies = summary["attack signed reply"]
    report.goal("/healthz under slow clients", "every one 200 within 3 s",
                f"{int(health['within_3s'])}/{int(health['requests'])}", health["within_3s"] == health["requests"])
    report.goal("signed replies under slow clients", "every one acked within 3 s",
                f"{int(replies['within_3s'])}/{int(replies['requests'])}", replies["within_3s"] == replies["requests"])
    report.goal("acked replies stored", "all", f"{int(replies['stored'])}/{int(replies['acked'])}",
                replies["stored"] == replies["acked"])
    return report.finish(parser_args.json)


if __name__ == "__main__":
    sys.exit(main())
