"""Real `python -m bot ...` processes, for the tests where the process is the point: the console script,
signals, SIGKILL halfway through a step, replicas, and a SQLite file shared between processes.

`launch(*args, env=...)` starts one (output to a log file in the test's directory) and stops whatever is
still running at the end of the test. `launch_run(env=...)` is `drillbot run --http --port 0`: the
system picks the port and the process reports it in its "serving HTTP on" line, so no port is guessed.
A BotProcess offers `wait_healthy()`, `wait_ticks()` (read from its /metrics), `sigterm()`, `sigkill()`,
`stop_cleanly()` and `logs()`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.events import SlackSender
from tests.fakes.workspace import assert_no_token
from tests.support.waiting import eventually

__all__ = ["BotProcess"]

SERVING = re.compile(r"serving HTTP on [^\s:]+:(\d+)")
SERVING_METRICS = re.compile(r"serving metrics on [^\s:]+:(\d+)")
STARTUP_SECONDS = 30  # a cold interpreter on a busy 2-core machine


class BotProcess:
    """One `python -m bot ARGS` process; stdout and stderr in `<name>.out` / `<name>.err`."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], cwd: Path, name: str) -> None:
        self.args, self.name = args, name
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", *args], env=env, cwd=cwd, stdout=stdout, stderr=stderr
            )
        self._port: int | None = None
        self._terminated = time.monotonic()

    # -- what it says ------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        """Wait for a one-shot command to exit; its exit code."""
        return self.process.wait(timeout=timeout)

    def alive(self) -> None:
        """Raise (with its output) if the process has exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()[-4000:]}")

    # -- HTTP ----------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port `run --http --port 0` is serving on, from its log (waits for the line)."""
        if self._port is None:
            found = eventually(
                lambda: SERVING.search(self.logs()), STARTUP_SECONDS, what=f"{self.name} to serve HTTP", check=self.alive
            )
            self._port = int(found.group(1))
        return self._port

    @property
    def metrics_port(self) -> int:
        """The port of the metrics listener (the launcher sets METRICS_PORT=0), from its log."""
        found = eventually(
            lambda: SERVING_METRICS.search(self.logs()), STARTUP_SECONDS, what=f"{self.name} to serve metrics",
            check=self.alive,
        )
        return int(found.group(1))

    @property
    def sender(self) -> SlackSender:
        return SlackSender(f"http://127.0.0.1:{self.port}")

    def wait_healthy(self, timeout: float = STARTUP_SECONDS) -> dict[str, Any]:
        """GET /healthz answers 200; returns its body."""
        sender = self.sender

        def healthy() -> dict[str, Any] | None:
            try:
                status, body = sender.get("/healthz")
            except OSError:
                return None
            return json.loads(body) if status == 200 else None  # type: ignore[no-any-return]

        return eventually(healthy, timeout, interval=0.05, what=f"{self.name} /healthz 200", check=self.alive)  # type: ignore[no-any-return]

    def scheduler_runs(self) -> dict[str, float]:
        """Completed scheduler runs per job, from GET /metrics (drillbot_scheduler_runs_total)."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = SlackSender(f"http://127.0.0.1:{self.metrics_port}").get("/metrics")
        assert status == 200, body[:300]
        runs: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "drillbot_scheduler_runs_total" and sample.labels.get("outcome") in ("ok", "error"):
                    task = sample.labels.get("task", "")
                    runs[task] = runs.get(task, 0.0) + sample.value
        return runs

    def wait_ticks(self, runs: int = 2, timeout: float = 15) -> None:
        """Every scheduler job has completed `runs` more runs (what settling after a step needs)."""
        before = eventually(self.scheduler_runs, timeout, interval=0.05, what="a first scheduler run", check=self.alive)

        def ran() -> bool:
            now = self.scheduler_runs()
            return all(now.get(job, 0) >= count + runs for job, count in before.items())

        eventually(
            ran,
            timeout,
            interval=0.05,
            what=f"{runs} more scheduler runs of every job in {self.name}",
            check=self.alive,
        )

    # -- signals -------------------------------------------------------------------------------------
    def sigkill(self) -> None:
        """SIGKILL (the process must still be running), and reap it."""
        self.alive()
        self.process.kill()
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def terminate(self) -> None:
        """Send SIGTERM (if it is still running) and return at once."""
        if self.process.poll() is None:
            self._terminated = time.monotonic()
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 15) -> tuple[int, float]:
        """Wait for the exit after `terminate()`; returns (exit code, seconds since SIGTERM)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise AssertionError(f"{self.name} still running {timeout:.0f}s after SIGTERM:\n{self.logs()[-3000:]}") from None
        return code, time.monotonic() - self._terminated

    def sigterm(self, timeout: float = 15) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds until the process was gone)."""
        self.terminate()
        return self.wait_stopped(timeout)

    def stop_cleanly(self, *, signalled: bool = False) -> str:
        """SIGTERM (unless `signalled` already); it exits 0 and its output has no traceback and no token.
        Returns the output."""
        if not signalled:
            self.terminate()
        code, _ = self.wait_stopped()
        logs = self.logs()
        assert code == 0, f"{self.name} exited {code}:\n{logs[-3000:]}"
        assert_no_token(logs)
        assert "Traceback" not in logs, logs[-3000:]
        return logs

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


RUN_HTTP = ("run", "--http", "--host", "127.0.0.1", "--port", "0")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., BotProcess]]:
    """`launch(*args, env=..., name=...)`: `python -m bot ARGS` in the background; killed at the end."""
    started: list[BotProcess] = []

    def factory(*args: str, env: dict[str, str], name: str | None = None) -> BotProcess:
        env = {"METRICS_PORT": "0", "METRICS_HOST": "127.0.0.1", **env}  # the scheduler runs are read from it
        proc = BotProcess(args, env, tmp_path, name or f"{args[0]}-{len(started) + 1}")
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.cleanup()


@pytest.fixture
def launch_run(launch: Callable[..., BotProcess]) -> Callable[..., BotProcess]:
    """`launch_run(env=..., name=...)`: `drillbot run --http` on a port the system picks."""

    def factory(*, env: dict[str, str], name: str | None = None) -> BotProcess:
        return launch(*RUN_HTTP, env=env, name=name)

    return factory
