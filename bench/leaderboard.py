"""The streak leaderboard over a big history: 5,000 people x 1,000 drills (about 2 million answers).

    .venv/bin/python bench/leaderboard.py [--quick] [--json out.json]

The database is generated straight into SQLite (schema from storage.db.Database.upgrade(), then
executemany for the drills and one INSERT ... SELECT for the answers): 999 closed drills and today's
drill still open; person n answers about (10 + n mod 61) % of the drills, in a scattered pattern.
--quick: 200 people x 50 drills.

Timed, in the same run:
- the baseline: one plain SQL aggregate over the same table, `SELECT user_id, count(*) FROM answers
  GROUP BY user_id` (sqlite3, fetchall);
- cold replay (no stored streak state yet): DrillService.leaderboard() in-process and
  `drillbot leaderboard --format json` (whole CLI process);
- DrillService.fold_streaks(channel) once (what the bot does after a reveal);
- folded: DrillService.leaderboard() in-process, the CLI, and the slash command: a manager's
  `/interview-question leaderboard` to a running `drillbot run --http`, from sending the request to
  the response_url post arriving at the fake Slack.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    BOT_TOKEN,
    Report,
    bot_env,
    command_body,
    drillbot_cli,
    drillbot_server,
    ms,
    parse_args,
    pct,
    sign,
    workdir,
)

CHANNEL = "CLEADER01"
MANAGER = "UMANAGER1"
_DT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite


def generate(db_path: Path, *, users: int, drills: int) -> tuple[int, float]:
    """Fill a fresh database; returns (answers, seconds)."""
    from storage.db import Database

    started = time.perf_counter()
    database = Database(f"sqlite:///{db_path}")
    database.upgrade()
    database.dispose()
    now = datetime.now(UTC).replace(tzinfo=None)
    today = now.date()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    conn.execute("BEGIN")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'answers' AND sql IS NOT NULL"
    ).fetchall()
    for name, _sql in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    rows = []
    for i in range(1, drills + 1):
        day = today - timedelta(days=drills - i)
        is_open = i == drills
        midnight = datetime.combine(day, datetime.min.time())
        deadline = now + timedelta(days=1) if is_open else midnight + timedelta(hours=16)
        posted = midnight + timedelta(hours=10)
        rows.append((
            i, CHANNEL, day.isoformat(), f"q-{i % 156:03d}", "open" if is_open else "closed",
            f"{1_600_000_000 + i * 86_400}.000100", deadline.strftime(_DT), posted.strftime(_DT),
            None if is_open else f"{1_600_000_000 + i * 86_400 + 21_600}.000100",
            None if is_open else deadline.strftime(_DT), 0, 1, 0, posted.strftime(_DT),
        ))
    conn.executemany(
        "INSERT INTO drills (id, channel, day, question_id, status, ts, deadline, posted_at, reveal_ts, revealed_at,"
        " answer_count, attempts, streak_applied, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("CREATE TEMP TABLE people (n INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO people (n) VALUES (?)", ((n,) for n in range(users)))
    conn.execute(
        """
        INSERT INTO answers (drill_id, channel, message_ts, user_id, text, deleted, created_at, updated_at)
        SELECT d.id, d.channel, printf('%d.%06d', 1600000000 + d.id * 86400 + 60, p.n), printf('U%07d', p.n),
               'my answer', 0, d.posted_at, d.posted_at
        FROM drills d CROSS JOIN people p
        WHERE d.channel = ? AND (d.id * 7919 + p.n * 104729 + (d.id * p.n) % 9973) % 100 < 10 + p.n % 61
        ORDER BY d.id, p.n
        """,
        (CHANNEL,),
    )
    for _name, sql in indexes:
        conn.execute(sql)
    conn.execute(
        "UPDATE drills SET answer_count = (SELECT count(*) FROM answers a WHERE a.drill_id = drills.id)"
        " WHERE status = 'closed'"
    )
    conn.execute("COMMIT")
    (answers,) = conn.execute("SELECT count(*) FROM answers").fetchone()
    conn.close()
    return int(answers), time.perf_counter() - started


def plain_aggregate(db_path: Path) -> tuple[float, int]:
    conn = sqlite3.connect(db_path)
    try:
        started = time.perf_counter()
        rows = conn.execute("SELECT user_id, count(*) FROM answers GROUP BY user_id").fetchall()
        return time.perf_counter() - started, len(rows)
    finally:
        conn.close()


def timed(fn, repeats: int) -> tuple[list[float], object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def summary(times: list[float]) -> tuple[str, str, str]:
    return ms(statistics.median(times)), ms(pct(times, 95)), ms(max(times))


def slash_leaderboard(env: dict[str, str], tmp: Path, fake, repeats: int) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """(acks, request -> response_url post) for `/interview-question leaderboard` from a manager."""
    import http.client

    bot = drillbot_server(env, tmp).start()
    acks, replies = [], []
    try:
        bot.wait_healthy()
        for i in range(repeats):
            before = len(fake.calls_to("response_url"))
            body = command_body("leaderboard", user_id=MANAGER, response_url=fake.response_url(f"lb{i}"),
                                channel=CHANNEL)
            ((raw, headers),) = sign([body], "application/x-www-form-urlencoded")
            conn = http.client.HTTPConnection("127.0.0.1", bot.port, timeout=30)
            sent_wall = time.time()
            sent = time.perf_counter()
            conn.request("POST", "/slack/events", body=raw, headers=headers)
            response = conn.getresponse()
            response.read()
            acks.append(time.perf_counter() - sent)
            conn.close()
            if response.status != 200:
                raise RuntimeError(f"slash command answered {response.status}")
            calls = fake.wait_for(lambda b=before: fake.calls_to("response_url")[b:], timeout=60, interval=0.002)
            if "Streak leaderboard" not in json.dumps(calls[0].params):
                raise RuntimeError(f"not a leaderboard: {calls[0].params}")
            replies.append(calls[0].at - sent_wall)
    finally:
        bot.stop()
    return acks, replies


def main() -> int:
    args = parse_args(__doc__ or "")
    from bot.runtime import build_runtime
    from bot.settings import Settings
    from tests.fakes.slack import FakeSlack

    users, drills = (200, 50) if args.quick else (5000, 1000)
    repeats = 5 if args.quick else 20
    report = Report("Streak leaderboard", args.quick)
    fake = FakeSlack().start()
    try:
        with workdir("leaderboard") as tmp:
            db_path = tmp / "drills.db"
            url = f"sqlite:///{db_path}"
            answers, generated = generate(db_path, users=users, drills=drills)
            print(f"generated {users} people x {drills} drills = {answers} answers in {generated:.1f} s", flush=True)
            env = bot_env(slack_url=fake.url, database_url=url, drill_channel=CHANNEL, drill_managers=MANAGER)

            base_times, aggregate_rows = timed(lambda: plain_aggregate(db_path)[1], repeats)
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                slack_bot_token=BOT_TOKEN,
                slack_api_url=fake.url,
                database_url=url,
                drill_channel=CHANNEL,
            )
            runtime = build_runtime(settings, load_questions=False)
            service = runtime.service
            try:
                cold_times, cold_rows = timed(lambda: service.leaderboard(CHANNEL), 2 if args.quick else 1)
                cold_cli_out, cold_cli = drillbot_cli(env, tmp, "leaderboard", "--format", "json")
                fold_started = time.perf_counter()
                folded_count = service.fold_streaks(CHANNEL)
                fold_seconds = time.perf_counter() - fold_started
                warm_times, warm_rows = timed(lambda: service.leaderboard(CHANNEL), repeats)
            finally:
                service.close()
                runtime.db.dispose()
            cli_times = []
            cli_out = ""
            for _ in range(2 if args.quick else 3):
                cli_out, seconds = drillbot_cli(env, tmp, "leaderboard", "--format", "json")
                cli_times.append(seconds)
            acks, replies = slash_leaderboard(env, tmp, fake, 3 if args.quick else 10)
    finally:
        fake.stop()

    same = cold_rows == warm_rows and json.loads(cold_cli_out) == json.loads(cli_out)
    people = len(json.loads(cli_out))
    base = statistics.median(base_times)
    warm = statistics.median(warm_times)
    cold = statistics.median(cold_times)
    slash = statistics.median(replies)
    report.add(
        f"{users} people x {drills} drills: {answers:,} answers (generated in {generated:.1f} s); "
        f"{people} people on the leaderboard, {aggregate_rows} rows from the plain aggregate. "
        f"Cold and folded leaderboards identical: {'yes' if same else 'NO'}. "
        f"fold_streaks folded {folded_count} closed drills in {fold_seconds:.2f} s (once)."
    )
    rows = [
        ("baseline: plain SQL aggregate (sqlite3)", len(base_times), *summary(base_times), "1.00x"),
        ("cold replay: DrillService.leaderboard()", len(cold_times), *summary(cold_times), f"{cold / base:.2f}x"),
        ("cold replay: drillbot leaderboard --format json (process)", 1, ms(cold_cli), ms(cold_cli), ms(cold_cli),
         f"{cold_cli / base:.2f}x"),
        ("folded: DrillService.leaderboard()", len(warm_times), *summary(warm_times), f"{warm / base:.2f}x"),
        ("folded: drillbot leaderboard --format json (process)", len(cli_times), *summary(cli_times),
         f"{statistics.median(cli_times) / base:.2f}x"),
        ("folded: /interview-question leaderboard, request -> response_url post", len(replies), *summary(replies),
         f"{slash / base:.2f}x"),
        ("folded: /interview-question leaderboard, ack", len(acks), *summary(acks), ""),
    ]
    report.table(("what", "runs", "median ms", "p95 ms", "max ms", "vs plain aggregate"), rows)
    report.metrics.update(
        users=users, drills=drills, answers=answers, generate_s=generated, aggregate_ms=base * 1000,
        cold_ms=cold * 1000, cold_cli_ms=cold_cli * 1000, fold_ms=fold_seconds * 1000, folded_ms=warm * 1000,
        folded_cli_ms=statistics.median(cli_times) * 1000, slash_ms=slash * 1000,
        slash_ack_ms=statistics.median(acks) * 1000, identical=same,
    )
    report.goal(f"leaderboard over {answers:,} answers (folded, in-process)", "< 100 ms", f"{warm * 1000:.1f} ms",
                warm < 0.1)
    report.goal("leaderboard vs plain aggregate (folded, in-process)", "<= 3x", f"{warm / base:.2f}x",
                warm <= 3 * base)
    report.goal("slash-command leaderboard, request -> reply (folded)", "< 100 ms (same goal)",
                f"{slash * 1000:.1f} ms", slash < 0.1)
    report.goal("cold and folded leaderboards identical", "yes", "yes" if same else "no", same)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
