"""One SQLite file, two kinds of process at once: the running server and the one-shot CLI.

`drillbot run --http` (a subprocess) takes a burst of signed thread replies from 8 threads while
`leaderboard`, `reveal --due` and `post` run again and again in parallel on the same file. Nothing may
fail with `database is locked`, every command must exit as it does when the bot is idle, every event
must be acknowledged with 200, and afterwards every answer is counted exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.events import SlackSender, reply_event
from tests.fakes.slack import FakeSlack
from tests.fakes.workspace import CHANNEL, assert_no_token

USERS = 400
SENDERS = 8
LOCKED = "database is locked"

Env = dict[str, str]
pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Run:
    name: str
    args: tuple[str, ...]
    overrides: dict[str, str]
    result: Result | None = None
    started: float = 0.0
    ended: float = 0.0


def run_process(launch: Callable[..., Any], env: Env, run: Run) -> Run:
    """One `python -m bot` command as its own process, on the shared file."""
    run.started = time.monotonic()
    proc = launch(*run.args, env=dict(env, **run.overrides))
    code = proc.wait(timeout=120)
    run.ended = time.monotonic()
    run.result = Result(code, proc.stdout(), proc.stderr())
    assert_no_token(run.result.stdout + run.result.stderr)
    return run


def test_server_and_cli_share_one_sqlite_file_under_load(
    bot_env: Callable[..., Env], launch: Callable[..., Any], launch_run: Callable[..., Any], run_cli: Any,
    fake_slack: FakeSlack,
) -> None:
    shared_env = bot_env(drill_answer_window="1h")
    server = launch_run(env=shared_env, name="server")
    # Today's drill, posted by the CLI before anything else runs.
    posted = run_cli("post", env=shared_env)
    assert posted.returncode == 0, posted.stderr
    drill_ts = fake_slack.messages[CHANNEL][0]["ts"]

    # What every command exits with when nothing else touches the file.
    kinds = {
        "leaderboard": (("leaderboard", "--format", "json"), {}),
        "reveal": (("reveal", "--due"), {}),
        "post": (("post",), {"DRILL_CHANNEL": "CIDLE0001"}),
    }
    idle = {name: run_cli(*args, env=shared_env, **overrides) for name, (args, overrides) in kinds.items()}
    idle_codes = {name: result.returncode for name, result in idle.items()}
    assert idle_codes == {"leaderboard": 0, "reveal": 0, "post": 0}, {n: r.stderr for n, r in idle.items()}

    server.wait_healthy()

    # The CLI runs, interleaved: 10 leaderboards, 3 reveals, 2 posts (each to its own channel, so it writes).
    runs: list[Run] = []
    posts = iter(["CLOAD0001", "CLOAD0002"])
    for i in range(15):
        if i in (4, 11):
            runs.append(Run("post", ("post",), {"DRILL_CHANNEL": next(posts)}))
        elif i in (2, 7, 13):
            runs.append(Run("reveal", ("reveal", "--due"), {}))
        else:
            runs.append(Run("leaderboard", ("leaderboard", "--format", "json"), {}))
    assert [r.name for r in runs].count("leaderboard") == 10

    users = [f"ULOAD{n:05d}" for n in range(USERS)]
    statuses: dict[str, object] = {}
    lock = threading.Lock()
    base_ts = time.time()
    cli_done = threading.Event()
    window: list[float] = []

    def send(shard: int) -> None:
        sender = SlackSender(f"http://127.0.0.1:{server.port}")  # one connection per event, as Slack does
        for n in range(shard, USERS, SENDERS):
            event = reply_event(drill_ts, user=users[n], ts=f"{base_ts + n / 1000:.6f}", text=f"answer {n}")
            try:
                status, body = sender.event(event, event_id=f"EvLOAD{n:05d}")
                outcome: object = status if status == 200 else (status, body[:200])
            except Exception as exc:  # a timeout or a reset is a failed delivery too
                outcome = f"{exc.__class__.__name__}: {exc}"
            with lock:
                statuses[users[n]] = outcome
            if not cli_done.is_set():
                time.sleep(0.04)  # spread the burst over the time the CLI runs take

    with ThreadPoolExecutor(max_workers=5) as cli_pool, ThreadPoolExecutor(max_workers=SENDERS) as send_pool:
        cli_futures = [cli_pool.submit(run_process, launch, shared_env, run) for run in runs]
        window.append(time.monotonic())
        send_futures = [send_pool.submit(send, shard) for shard in range(SENDERS)]
        for future in cli_futures:
            future.result(timeout=120)
        cli_done.set()
        for future in send_futures:
            future.result(timeout=120)
        window.append(time.monotonic())

    # The load really overlapped: several CLI runs started and ended while events were arriving.
    overlapping = [r for r in runs if r.started < window[1] and r.ended > window[0]]
    assert len(overlapping) >= 5, f"only {len(overlapping)} CLI runs overlapped the event burst"

    # Every command exited as it does when idle, and none saw a locked database.
    for run in runs:
        assert run.result is not None
        output = run.result.stdout + run.result.stderr
        assert LOCKED not in output, f"{run.name} {run.args}: {run.result.stderr}"
        assert run.result.returncode == idle_codes[run.name], (
            f"{run.name} exited {run.result.returncode} under load (idle: {idle_codes[run.name]}): "
            f"{run.result.stderr.strip()}"
        )
        if run.name == "leaderboard":
            assert isinstance(json.loads(run.result.stdout), list)
        elif run.name == "reveal":
            assert "Nothing to reveal" in run.result.stdout
        else:
            assert "Posted today's drill" in run.result.stdout, run.result.stdout

    # Every event was acknowledged with 200 (so every answer was stored before the ack).
    assert len(statuses) == USERS
    failed = {user: outcome for user, outcome in statuses.items() if outcome != 200}
    assert not failed, f"{len(failed)} of {USERS} events not acknowledged with 200, e.g. {list(failed.items())[:5]}"

    # Every user is counted exactly once.
    final = run_cli("leaderboard", "--format", "json", env=shared_env)
    assert final.returncode == 0, final.stderr
    board = {row["user_id"]: row for row in json.loads(final.stdout)}
    assert set(board) == set(users)
    wrong = {user: row["total_answers"] for user, row in board.items() if row["total_answers"] != 1}
    assert not wrong, f"users not counted exactly once: {dict(list(wrong.items())[:5])}"

    # The two posts under load went out once each; the idle one too; the shared drill only once.
    top_level = [c.params["channel"] for c in fake_slack.posts(thread=False)]
    assert sorted(top_level) == sorted([CHANNEL, "CIDLE0001", "CLOAD0001", "CLOAD0002"])

    # The server is still healthy, stops cleanly, and never logged a locked database.
    assert server.wait_healthy()["database"] == "ok"
    logs = server.stop_cleanly()
    assert LOCKED not in logs, logs[-3000:]
    assert "listener failed" not in logs, logs[-3000:]
