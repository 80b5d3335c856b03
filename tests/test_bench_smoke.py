"""Smoke test of the benchmark scripts: each runs with --quick (tiny sizes) and prints its tables.

The scripts run at the same time (each in its own process group) to keep this file well under a
minute; their figures are meaningless here, only that they run end to end and report. The real runs
(`python bench/run_all.py`) are not part of the test suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
GOALS = "| goal | target | measured | verdict |"
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    "startup.py": ([], ["| run | start -> /healthz 200 (s) | idle RSS (MB) |"]),
    "ingest.py": (
        ["--floor"],
        [
            "| server | concurrency | events | events/s | p50 ms | p95 ms | p99 ms | non-200 |",
            "| server | concurrency | events/s | bare Bolt events/s | throughput ratio | p99 ratio |",
            "| server | concurrency | acked (200) | replies stored | distinct users stored |",
            "| drillbot resident memory | MB |",
            "| drillbot | 64 | 90 |",
            "| bare Bolt + one SQLite insert | 64 |",
        ],
    ),
    "answer_cost.py": ([], ["| what runs | CPU us per request |", "| drillbot's edge, the answer stored, c=1 |"]),
    "slash_ack.py": (
        [],
        [
            "| server | concurrency | commands | commands/s | min ms | p50 ms | p95 ms | p99 ms | >= 10 ms | non-200 |",
            "| server | concurrency | p50 vs bare Bolt | p99 vs bare Bolt |",
            "| bare Bolt, default config | 16 |",
        ],
    ),
    "leaderboard.py": (
        [],
        [
            "| what | runs | median ms | p95 ms | max ms | vs plain aggregate |",
            "| baseline: plain SQL aggregate (sqlite3) |",
            "| folded: /interview-question leaderboard, request -> response_url post |",
        ],
    ),
    "reveal_lateness.py": ([], ["| DRILL_TICK_SECONDS | drills | min s | median s | max s | bot RSS MB |"]),
    "slowloris.py": (
        [],
        [
            "| phase | probe | requests | 200 within 3 s | p50 ms | p99 ms | max ms | failed | acked and stored |",
            "| attack | signed reply |",
        ],
    ),
}
DEADLINE_SECONDS = 100
pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """Start every script with --quick at once; wait for all. script -> (exit code, output, json path)."""
    out = tmp_path_factory.mktemp("bench")
    running = {}
    for script, (extra, _headers) in SCRIPTS.items():
        log_path = out / f"{script}.log"
        json_path = out / f"{script}.json"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, str(BENCH / script), "--quick", "--json", str(json_path), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=out,
                start_new_session=True,  # its servers share its process group: killable together
            )
        running[script] = (process, log_path, json_path)
    end = time.monotonic() + DEADLINE_SECONDS
    results = {}
    for script, (process, log_path, json_path) in running.items():
        try:
            code = process.wait(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = -9
        results[script] = (code, log_path.read_text(errors="replace"), json_path)
    return results


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_quick_run_prints_its_tables(quick_runs: dict[str, tuple[int, str, Path]], script: str) -> None:
    code, output, _json_path = quick_runs[script]
    assert code == 0, f"{script} --quick exited {code}:\n{output[-3000:]}"
    for header in [*SCRIPTS[script][1], GOALS]:
        assert header in output, f"{script}: no {header!r} in its output:\n{output[-3000:]}"


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_quick_run_writes_what_run_all_reads(quick_runs: dict[str, tuple[int, str, Path]], script: str) -> None:
    code, output, json_path = quick_runs[script]
    assert code == 0, output[-3000:]
    data = json.loads(json_path.read_text())
    assert data["quick"] is True
    assert data["title"] and data["markdown"].startswith(f"## {data['title']}")
    assert data["goals"], "every benchmark states its goals"
    assert all(isinstance(g["met"], bool) and g["measured"] for g in data["goals"])
    assert {"nproc", "cpu", "python"} <= data["machine"].keys()
