"""Where an answer's time goes: CPU per signed thread reply, in-process, without the HTTP server.

    .venv/bin/python bench/answer_cost.py [--quick] [--json out.json]

The same signed thread replies (an open drill, SQLite in a temp dir, the fake Slack in-process) are handed
as ASGI requests, on one asyncio loop, to: Bolt's own ASGI adapter over the bare Bolt app of
bench/bare_bolt.py (no-op listener, Bolt's signature check on; `App.dispatch` on the loop, as Bolt documents
for production), the same bare app behind drillbot's edge (`SlackEdge`: checks on the loop, Bolt's dispatch
on a request thread), and drillbot's edge with its answer intake (the reply stored before the 200). Each one
request at a time (c=1) and in waves of 64 at once (c=64: the intake stores a wave in few transactions).
Then the intake's database work alone (`Answers.record_replies`) for groups of 1 and 32 replies, and the
same statement with sqlite3 directly (BEGIN IMMEDIATE, the INSERT ... SELECT per reply, COMMIT): the floor
under SQLAlchemy. CPU time of the whole process (time.process_time: the loop, the request threads and the
intake's writer), best of 3 rounds, so other work on a shared machine counts less than in a wall-clock
figure. uvicorn's HTTP parsing and the socket writes are not in these figures (bench/ingest.py measures
the whole request); they cost every server the same.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bare_bolt, ingest  # noqa: E402
from bench._common import BUNDLED_BANK, NEVER, Report, parse_args, sign, workdir  # noqa: E402
from tests.conftest import BOT_TOKEN, SIGNING_SECRET  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402

ROUNDS = 3


def best_cpu_us(run: Callable[[int], None], count: int) -> float:
    """Best of ROUNDS: CPU microseconds per call of run(round) over `count` calls (run does them all)."""
    best = float("inf")
    for round_ in range(ROUNDS):
        started = time.process_time()
        run(round_)
        best = min(best, time.process_time() - started)
    return best / count * 1e6


Request = tuple[bytes, dict[str, str]]


def asgi_call(app: Any, body: bytes, headers: dict[str, str]) -> Any:
    """One POST /slack/events through an ASGI app; returns the awaitable and the list its status lands in."""
    scope = {
        "type": "http", "method": "POST", "path": "/slack/events", "query_string": b"", "http_version": "1.1",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 3000), "scheme": "http", "root_path": "",
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    return app(scope, receive, send), statuses


def through_asgi(app: Any, batches: list[list[Request]], wave: int) -> Callable[[int], None]:
    """run(round): every request of that round's batch through `app`, `wave` at a time, all must be 200."""

    def run(round_: int) -> None:
        async def all_of() -> None:
            requests = batches[round_]
            for start in range(0, len(requests), wave):
                calls = [asgi_call(app, body, headers) for body, headers in requests[start:start + wave]]
                await asyncio.gather(*(awaitable for awaitable, _ in calls))
                for _, statuses in calls:
                    assert statuses == [200], statuses

        asyncio.run(all_of())

    return run


def main() -> int:
    args = parse_args(__doc__ or "")
    count = 200 if args.quick else 3000
    report = Report("Answer cost on the request thread (CPU per request, in-process)", args.quick)

    from bot.runtime import Bot, build_runtime
    from bot.settings import Settings
    from bot.web import SlackEdge
    from storage import repo

    fake = FakeSlack().start()
    rows: list[tuple[str, float]] = []
    try:
        with workdir("cost") as tmp:
            url = f"sqlite:///{tmp / 'drills.db'}"
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                slack_bot_token=BOT_TOKEN,
                slack_signing_secret=SIGNING_SECRET,
                slack_api_url=fake.url,
                database_url=url,
                questions_file=str(BUNDLED_BANK),
                drill_schedule=NEVER,
            )
            drills = ingest.post_drills(fake.url, url, ["CCOST"])
            thread = drills["CCOST"]
            bot = Bot(build_runtime(settings, verify_token=True), mode="http", host="127.0.0.1", port=0)
            bot.start()
            try:
                service = bot.runtime.service
                edge = bot.server.listeners[0].app  # type: ignore[union-attr]
                from slack_bolt.adapter.asgi import SlackRequestHandler

                bare_app = bare_bolt.build(fake.url, "tuned")
                bare_asgi = SlackRequestHandler(bare_app)
                bare_edge = SlackEdge(bare_app, signing_secret=SIGNING_SECRET, health=lambda: (True, {}))

                def requests(tag: str) -> list[Request]:
                    bodies = ingest.reply_bodies("CCOST", thread, count // ingest.REPLIES_PER_USER, tag)
                    return [(b, {k.lower(): v for k, v in h.items()}) for b, h in sign(bodies)]

                for name, app in (("Bolt's ASGI adapter, bare Bolt app", bare_asgi),
                                  ("bare Bolt app behind drillbot's edge", bare_edge),
                                  ("drillbot's edge, the answer stored", edge)):
                    for wave in (1, 64):
                        tag = f"{name[:2]}{wave}"
                        through_asgi(app, [requests(f"{tag}W")[:128]], wave)(0)  # warm-up
                        batches = [requests(f"{tag}r{r}") for r in range(ROUNDS)]
                        rows.append((f"{name}, c={wave}", best_cpu_us(through_asgi(app, batches, wave), count)))
                bare_edge.close()

                for group in (1, 32):
                    events = [[json.loads(b)["event"] for b, _h in requests(f"g{group}r{r}")] for r in range(ROUNDS)]

                    def grouped(round_: int, group: int = group, events: list[list[Any]] = events) -> None:
                        batch = events[round_]
                        for start in range(0, len(batch), group):
                            service.record_replies(batch[start:start + group], "UBOT")

                    rows.append((f"database work alone: record_replies, {group} per transaction",
                                 best_cpu_us(grouped, count)))

                now = datetime.now(UTC)

                raw = service.db.engine.raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                sql = str(repo._ANSWER_INSERTS[("sqlite", False)].statement.compile(dialect=service.db.engine.dialect))
                stamp = now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

                for group in (1, 32):

                    def raw_sqlite(round_: int, group: int = group) -> None:
                        for start in range(0, count, group):
                            driver.execute("BEGIN IMMEDIATE")
                            for k in range(start, min(count, start + group)):
                                driver.execute(sql, (f"raw{group}.{round_}.{k:06d}", f"U{k}", "an answer", stamp,
                                                     stamp, "CCOST", thread, stamp)).fetchone()
                            driver.execute("COMMIT")

                    rows.append((f"the same statement through sqlite3 directly, {group} per transaction (floor)",
                                 best_cpu_us(raw_sqlite, count)))
                raw.close()
            finally:
                bot.stop()
    finally:
        fake.stop()

    report.add(f"{count} signed thread replies per round, best of {ROUNDS} rounds; CPU microseconds per request "
               "(time.process_time of the whole process).")
    report.table(("what runs", "CPU us per request"), [(name, f"{us:.0f}") for name, us in rows])
    by_name = dict(rows)
    report.metrics.update(cpu_us=by_name)
    for wave in (1, 64):
        ratio = by_name[f"drillbot's edge, the answer stored, c={wave}"] / by_name[
            f"Bolt's ASGI adapter, bare Bolt app, c={wave}"]
        # If these were the whole cost, >= 0.8x the bare app's throughput would be <= 1.25x its CPU.
        report.goal(f"CPU per answer vs Bolt's ASGI adapter, c={wave}", "<= 1.25x (0.8x throughput)",
                    f"{ratio:.2f}x", ratio <= 1.25)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
