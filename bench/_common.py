"""Plumbing shared by the benchmark scripts.

Server processes (`drillbot run --http`, the bare Bolt baseline, a fake Slack), really signed Slack
requests (the signing code of tests/conftest.py), a keep-alive load generator, percentiles and the
markdown/JSON report every script prints. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import BOT_TOKEN, SIGNING_SECRET, SlackSender, reply_event  # noqa: E402

__all__ = [
    "BOT_TOKEN",
    "BUNDLED_BANK",
    "NEVER",
    "ROOT",
    "SIGNING_SECRET",
    "FakeSlackProcess",
    "LoadResult",
    "Report",
    "Server",
    "bare_bolt",
    "bot_env",
    "command_body",
    "drillbot_cli",
    "drillbot_server",
    "event_body",
    "free_port",
    "machine",
    "parse_args",
    "pct",
    "reply_event",
    "rss_mb",
    "run_load",
    "sign",
    "workdir",
]

BUNDLED_BANK = ROOT / "questions.yaml"
NEVER = "0 0 1 1 *"  # a schedule that does not fire during a benchmark (midnight on 1 January)
EVENTS_PATH = "/slack/events"
_SIGNER = SlackSender("http://127.0.0.1:1")


# -- command line and report -----------------------------------------------------------------------


def parse_args(
    description: str, argv: Sequence[str] | None = None, *, floor: bool = False
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (the smoke test)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    if floor:
        parser.add_argument("--floor", action="store_true",
                            help="also measure the bare Bolt app storing each event with one SQLite insert")
    return parser.parse_args(argv)


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


@dataclass
class Report:
    """What a script found: markdown sections for people, metrics and goals for run_all.py."""

    title: str
    quick: bool
    sections: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    goals: list[dict[str, Any]] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.sections.append(text)
        print(text + "\n", flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.add(table(headers, rows))

    def goal(self, name: str, target: str, measured: str, met: bool) -> None:
        self.goals.append({"goal": name, "target": target, "measured": measured, "met": bool(met)})

    def markdown(self) -> str:
        parts = [f"## {self.title}" + (" (--quick)" if self.quick else ""), *self.sections]
        if self.goals:
            parts.append(self.goals_table())
        return "\n\n".join(parts) + "\n"

    def goals_table(self) -> str:
        rows = [(g["goal"], g["target"], g["measured"], "met" if g["met"] else "NOT met") for g in self.goals]
        return table(("goal", "target", "measured", "verdict"), rows)

    def finish(self, json_path: Path | None) -> int:
        if self.goals:
            print(self.goals_table() + "\n", flush=True)
        if json_path is not None:
            data = {
                "title": self.title,
                "quick": self.quick,
                "machine": machine(),
                "metrics": self.metrics,
                "goals": self.goals,
                "markdown": self.markdown(),
            }
            json_path.write_text(json.dumps(data, indent=2))
        return 0


# -- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"drillbot-bench-{prefix}-") as path:
        yield Path(path)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (10^6 bytes), from /proc/<pid>/status VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


def bot_env(*, slack_url: str, database_url: str, **settings: str | None) -> dict[str, str]:
    """The environment a deployment would give drillbot; `drill_channel="C1"` sets DRILL_CHANNEL, None unsets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DRILL_")) and k not in ("DATABASE_URL", "QUESTIONS_FILE", "PORT")
    }
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_url,
        DATABASE_URL=database_url,
        QUESTIONS_FILE=str(BUNDLED_BANK),
        DRILL_SCHEDULE=NEVER,
        PYTHONUNBUFFERED="1",
    )
    for key, value in settings.items():
        if value is None:
            env.pop(key.upper(), None)
        else:
            env[key.upper()] = value
    return env


class Server:
    """A server subprocess that answers GET /healthz; its output goes to a log file in its work dir."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path, port: int) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.port = port
        self.log_path = cwd / f"{name.replace(' ', '_')}-{port}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Server:
        log = self.log_path.open("ab")
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def wait_healthy(self, timeout: float = 60.0, interval: float = 0.005) -> float:
        """Poll /healthz until 200; returns the seconds since start()."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(interval)
        raise RuntimeError(f"{self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def drillbot_server(env: dict[str, str], cwd: Path, name: str = "drillbot") -> Server:
    """`drillbot run --http` on a free port."""
    port = free_port()
    run = ["run", "--http", "--host", "127.0.0.1", "--port", str(port)]
    return Server(name, [sys.executable, "-m", "bot", *run], env=env, cwd=cwd, port=port)


def bare_bolt(
    slack_url: str, cwd: Path, *, config: str = "tuned", name: str | None = None, extra: Sequence[str] = ()
) -> Server:
    """The baseline: a Bolt app with no-op listeners behind drillbot's own edge and server (`--server
    drillbot`), or Bolt's ASGI adapter under uvicorn (`extra=["--server", "bolt-asgi"]`)."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "bare_bolt.py"), "--port", str(port), "--slack-url", slack_url,
            "--config", config, *extra]
    env = bot_env(slack_url=slack_url, database_url="sqlite://")
    name = name or ("bare Bolt" if config == "tuned" else "bare Bolt, default config")
    return Server(name, argv, env=env, cwd=cwd, port=port)


def drillbot_cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> tuple[str, float]:
    """Run `python -m bot ARGS`; returns stdout and the wall time of the whole process. Raises on failure."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"drillbot {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout, elapsed


class FakeSlackProcess:
    """tests/fakes/slack.py in its own process (bench/fake_slack_server.py), off the load generator's GIL."""

    def __init__(self, cwd: Path) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "fake_slack_server.py")],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(f"fake Slack did not start: {line!r}")
        self.url = line  # .../api/
        self.base = line.removesuffix("/api/")

    def response_url(self, name: str) -> str:
        return f"{self.base}/response/{name}"

    def counts(self) -> dict[str, int]:
        """Calls received so far, by method (response_url posts count as "response_url")."""
        host, port = self.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", "/api/bench.stats", body=b"{}", headers={"Content-Type": "application/json"})
            data = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return {k: v for k, v in data["counts"].items() if k != "bench.stats"}

    def stop(self) -> None:
        if self.popen.poll() is None:
            assert self.popen.stdin is not None
            self.popen.stdin.close()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def __enter__(self) -> FakeSlackProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# -- Slack requests --------------------------------------------------------------------------------


def event_body(event: dict[str, Any], event_id: str) -> bytes:
    payload = {
        "token": "legacy",
        "team_id": "T0FAKE",
        "api_app_id": "A0FAKE",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }
    return json.dumps(payload).encode()


def command_body(text: str, *, user_id: str, response_url: str, channel: str = "CBENCH") -> bytes:
    form = {
        "token": "legacy",
        "team_id": "T0FAKE",
        "channel_id": channel,
        "user_id": user_id,
        "user_name": "someone",
        "command": "/interview-question",
        "text": text,
        "api_app_id": "A0FAKE",
        "response_url": response_url,
        "trigger_id": "1.2.3",
    }
    return urlencode(form).encode()


def sign(bodies: Sequence[bytes], content_type: str = "application/json") -> list[tuple[bytes, dict[str, str]]]:
    """Signed requests with the current timestamp (Slack's signatures stay valid for five minutes)."""
    return [(body, {"Content-Type": content_type, **_SIGNER.headers_for(body)}) for body in bodies]


# -- load generator --------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


@dataclass
class LoadResult:
    concurrency: int
    elapsed: float
    latencies: list[float]
    statuses: Counter[int]
    errors: list[str]

    @property
    def sent(self) -> int:
        return len(self.latencies)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed else math.nan

    def p(self, percentile: float) -> float:
        return pct(self.latencies, percentile)

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else math.nan


def run_load(
    port: int,
    requests: Sequence[tuple[bytes, dict[str, str]]],
    concurrency: int,
    *,
    path: str = EVENTS_PATH,
    timeout: float = 30.0,
) -> LoadResult:
    """Send every request once over `concurrency` keep-alive connections (one thread each), as fast as
    the server answers; the latency of a request is from before sending it to its whole response read."""
    n = len(requests)
    latencies = [0.0] * n
    statuses = [0] * n
    errors: list[str] = []
    counter = itertools.count()
    barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.connect()
        barrier.wait()
        try:
            while True:
                i = next(counter)
                if i >= n:
                    return
                body, headers = requests[i]
                started = time.perf_counter()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    statuses[i] = response.status
                except (OSError, http.client.HTTPException) as exc:
                    statuses[i] = -1
                    errors.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                latencies[i] = time.perf_counter() - started
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"load-{k}", daemon=True) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return LoadResult(concurrency, elapsed, latencies, Counter(statuses), errors)
