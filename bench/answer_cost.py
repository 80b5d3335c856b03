"""Where an answer's time goes: CPU per request on the request thread, in-process, without the HTTP server.

    .venv/bin/python bench/answer_cost.py [--quick] [--json out.json]

The same signed thread replies (an open drill, SQLite in a temp dir, the fake Slack in-process) go
straight to `SlackEdge._slack` (parse, Bolt's `App.dispatch`, the listener: everything a request thread
does) of: the bare Bolt app of bench/bare_bolt.py (no-op listener, Bolt's signature check on), drillbot's
own Bolt app with the answer path replaced by a no-op (what Bolt and drillbot's app cost), and drillbot
itself. Then the answer path alone (`DrillService.handle_message_event`), its database work alone
(`Database.begin()` + `repo.insert_answer`), and the same statement with sqlite3 directly (BEGIN
IMMEDIATE, INSERT ... SELECT, COMMIT): the floor under SQLAlchemy. CPU time of the process
(time.process_time), best of 3 rounds of --requests each, so other work on a shared machine counts less
than in a wall-clock figure. The uvicorn event loop and the hop to the request thread are not in these
figures (bench/ingest.py measures the whole request).
"""

from __future__ import annotations

import copy
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


def main() -> int:
    args = parse_args(__doc__ or "")
    count = 200 if args.quick else 3000
    report = Report("Answer cost on the request thread (CPU per request, in-process)", args.quick)

    from bot.app import build_app
    from bot.drills.answers import Answers
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
            bot = Bot(build_runtime(settings), mode="http", host="127.0.0.1", port=0)
            bot.start()
            try:
                service = bot.runtime.service
                edge = bot.server.listeners[0].app  # type: ignore[union-attr]
                bare = SlackEdge(bare_bolt.build(fake.url, "tuned"), signing_secret=SIGNING_SECRET,
                                 health=lambda: (True, {}))

                class NoAnswers(Answers):
                    def handle_message_event(self, event: Any, bot_user_id: str | None) -> str:
                        return "ignored"

                hollow_service = copy.copy(service)
                hollow_service.answers = NoAnswers(service.loop)
                hollow = SlackEdge(build_app(settings, hollow_service, client=bot.runtime.client),
                                   signing_secret=SIGNING_SECRET, health=lambda: (True, {}))

                def requests(tag: str) -> list[tuple[bytes, dict[str, str]]]:
                    bodies = ingest.reply_bodies("CCOST", thread, count // ingest.REPLIES_PER_USER, tag)
                    return [(b, {k.lower(): v for k, v in h.items()}) for b, h in sign(bodies)]

                def through(server: SlackEdge, name: str) -> float:
                    batches = [requests(f"{name[:2]}{r}") for r in range(ROUNDS)]
                    for body, headers in requests(f"{name[:2]}W")[:100]:  # warm-up
                        server._slack(body, headers, "")

                    def run(round_: int) -> None:
                        for body, headers in batches[round_]:
                            reply = server._slack(body, headers, "")
                            assert reply.status == 200, reply

                    return best_cpu_us(run, len(batches[0]))

                rows.append(("bare Bolt app (no-op listener)", through(bare, "bare")))
                rows.append(("drillbot's Bolt app, answer path a no-op", through(hollow, "hollow")))
                rows.append(("drillbot (the answer stored)", through(edge, "drillbot")))

                events = [[json.loads(b)["event"] for b, _h in requests(f"ev{r}")] for r in range(ROUNDS)]
                rows.append(("answer path alone: handle_message_event", best_cpu_us(
                    lambda r: [service.handle_message_event(e, "UBOT") for e in events[r]], len(events[0]))))

                now = datetime.now(UTC)

                def statement_only(round_: int) -> None:
                    for k in range(count):
                        reply = repo.ThreadReply("CCOST", thread, f"{round_}.{k:06d}", f"U{k}", "an answer", now, now)
                        with service.db.begin() as conn:
                            repo.insert_answer(conn, reply=reply)

                rows.append(("database work alone: begin() + insert_answer + commit", best_cpu_us(
                    statement_only, count)))

                raw = service.db.engine.raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                sql = str(repo._ANSWER_INSERTS[("sqlite", False)].compile(dialect=service.db.engine.dialect))
                stamp = now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

                def raw_sqlite(round_: int) -> None:
                    for k in range(count):
                        driver.execute("BEGIN IMMEDIATE")
                        driver.execute(sql, (f"raw{round_}.{k:06d}", f"U{k}", "an answer", stamp, stamp, "CCOST",
                                             thread, stamp)).fetchone()
                        driver.execute("COMMIT")

                rows.append(("the same statement through sqlite3 directly (floor)", best_cpu_us(raw_sqlite, count)))
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
    ratio = by_name["drillbot (the answer stored)"] / by_name["bare Bolt app (no-op listener)"]
    # If the request thread were the whole cost, >= 0.8x the bare app's throughput would be <= 1.25x its CPU.
    report.goal("request-thread CPU per answer vs bare Bolt", "<= 1.25x (0.8x throughput)", f"{ratio:.2f}x",
                ratio <= 1.25)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
