"""`python -m bot ...` with experimental changes patched in at start-up: evidence for proposed product changes.

Nothing in bot/ or storage/ is edited; this wrapper patches classes before the CLI runs, from the
environment:

- BENCH_SQLITE_WRITE_LOCK=1: one SQLite write transaction at a time per process, queued on a
  threading.Lock (woken at once) instead of SQLite's busy handler (which sleeps 1, 2, 5, 10 ... 100 ms
  between retries of BEGIN IMMEDIATE);
- BENCH_SQLITE_NO_PING=1: no pool pre-ping (a `SELECT 1` before every transaction) on SQLite;
- BENCH_DIRECT_HANDOFF=1: /interview-question acks, then hands the answer to a thread pool itself
  instead of through a Bolt lazy listener (no deep copy of the request before the ack).

Usage: BENCH_SQLITE_WRITE_LOCK=1 python bench/drillbot_variant.py run --http --port N
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def patch() -> list[str]:
    applied = []
    if os.environ.get("BENCH_SQLITE_WRITE_LOCK") == "1":
        from storage import db as storage_db

        original_transaction = storage_db.Database.transaction
        lock = threading.RLock()

        @contextlib.contextmanager
        def transaction(self: storage_db.Database) -> Iterator[Any]:
            if self.dialect != "sqlite":
                with original_transaction(self) as session:
                    yield session
                return
            with lock, original_transaction(self) as session:
                yield session

        storage_db.Database.transaction = transaction  # type: ignore[method-assign]
        applied.append("SQLite writes serialised on a threading.Lock")
    if os.environ.get("BENCH_SQLITE_NO_PING") == "1":
        from storage import db as storage_db

        original_db_init = storage_db.Database.__init__

        def db_init(self: storage_db.Database, *args: Any, **kwargs: Any) -> None:
            original_db_init(self, *args, **kwargs)
            if self.dialect == "sqlite":
                self.engine.pool._pre_ping = False  # a local file: nothing to ping

        storage_db.Database.__init__ = db_init  # type: ignore[method-assign]
        applied.append("no pool pre-ping on SQLite")
    if os.environ.get("BENCH_DIRECT_HANDOFF") == "1":
        applied.append(_direct_handoff())
    return applied


def _direct_handoff() -> str:
    """/interview-question: ack, then submit the answer to a thread pool ourselves, instead of a Bolt lazy
    listener (which deep-copies the whole request and context on the request thread before the ack)."""
    from concurrent.futures import ThreadPoolExecutor

    from slack_bolt import Ack, App, Respond

    from bot.drills import DrillService
    from bot.listeners import commands
    from bot.listeners.commands.interview_question import COMMAND, command_responder

    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="command")

    def register(app: App, service: DrillService) -> None:
        answer = command_responder(service)

        def ack_and_hand_off(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
            ack()
            pool.submit(answer, command=dict(command), respond=respond)

        app.command(COMMAND)(ack_and_hand_off)

    commands.register = register
    return "slash command answered from our own thread pool (no Bolt lazy listener)"


def main() -> None:
    applied = patch()
    print("drillbot_variant: " + ("; ".join(applied) or "no changes"), file=sys.stderr, flush=True)
    from bot.cli import main as cli_main

    cli_main(prog_name="drillbot")


if __name__ == "__main__":
    main()
