"""Event ingestion: signed thread replies to an open drill, over HTTP, at concurrency 1, 16 and 64.

    .venv/bin/python bench/ingest.py [--quick] [--floor] [--json out.json]

`drillbot run --http` runs as a subprocess (SQLite in a temp dir, the fake Slack in another process).
Each concurrency level gets its own channel with an open drill (posted through DrillService against the
same database) and 1,000 distinct users x 3 replies (--quick: 30 x 3). The baseline, measured in the
same run with the same requests and the same load generator, is a bare Bolt app with a no-op `message`
listener behind the same edge and server (bench/bare_bolt.py); the same app under Bolt's own ASGI adapter
and uvicorn (as Bolt documents for production) is measured too. Afterwards every level is
checked for loss: every reply stored, every user counted exactly once on the leaderboard (in-process
and, for c=64, `drillbot leaderboard --format json`). `--floor` adds the bare Bolt app storing
each reply with one sqlite3 INSERT + COMMIT before the ack (the floor for any design that stores before
acking). Resident memory of the drillbot process is read from /proc/<pid>/status when idle after start
and after the load.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    BOT_TOKEN,
    BUNDLED_BANK,
    NEVER,
    SIGNING_SECRET,
    FakeSlackProcess,
    LoadResult,
    Report,
    Server,
    bare_bolt,
    bot_env,
    drillbot_cli,
    drillbot_server,
    event_body,
    ms,
    parse_args,
    reply_event,
    run_load,
    sign,
    workdir,
)

LEVELS = (1, 16, 64)
FLOOR_NAME = "bare Bolt + one SQLite insert"
BOLT_ASGI_NAME = "bare Bolt, Bolt's ASGI adapter + uvicorn"
REPLIES_PER_USER = 3
WARMUP_CHANNEL = "CBENCHWARM"


def post_drills(slack_url: str, database_url: str, channels: list[str]) -> dict[str, str]:
    """Post an open drill (1 h window) in each channel through the real service; returns channel -> ts."""
    from bot.drills import DrillService, PostResult
    from bot.runtime import build_runtime
    from bot.settings import Settings
    from bot.slack_api import SlackGateway

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack_url,
        database_url=database_url,
        questions_file=str(BUNDLED_BANK),
        drill_schedule=NEVER,
        drill_answer_window="1h",
    )
    runtime = build_runtime(settings)
    posted: dict[str, str] = {}
    try:
        for channel in channels:
            service = DrillService(
                settings=settings.model_copy(update={"drill_channel": channel}),
                bank=runtime.bank,
                db=runtime.db,
                slack=SlackGateway(runtime.client),
            )
            outcome = service.post_today()
            service.close()
            if outcome.result != PostResult.POSTED or outcome.ts is None:
                raise RuntimeError(f"could not post the drill in {channel}: {outcome}")
            posted[channel] = outcome.ts
    finally:
        runtime.service.close()
        runtime.db.dispose()
    return posted


def reply_bodies(channel: str, drill_ts: str, users: int, tag: str) -> list[bytes]:
    """users x 3 replies, interleaved (every user's first reply, then every second one, ...)."""
    base = time.time() - 60  # written a minute ago: well before the 1 h deadline
    bodies = []
    for r in range(REPLIES_PER_USER):
        for u in range(users):
            k = r * users + u
            event = reply_event(
                drill_ts, user=f"U{tag}{u:06d}", ts=f"{base + k * 1e-5:.6f}", channel=channel, text=f"answer {r}"
            )
            bodies.append(event_body(event, f"Ev{tag}{k:08d}"))
    return bodies


def noise_bodies(channel: str, drill_ts: str, count: int, tag: str) -> list[bytes]:
    """Messages that are not answers, as a busy channel with an open drill sends them: half top-level
    chatter, a quarter replies in other threads, a quarter bot messages (in that repeating order)."""
    base = time.time() - 60
    other_thread = f"{base - 3600:.6f}"  # someone else's thread, an hour old
    bodies = []
    for k in range(count):
        ts = f"{base + k * 1e-5:.6f}"
        kind = k % 4
        event = reply_event(drill_ts, user=f"U{tag}{k % 500:06d}", ts=ts, channel=channel, text=f"chatter {k}")
        if kind in (0, 2):
            del event["thread_ts"]
        elif kind == 1:
            event["thread_ts"] = other_thread
        else:
            event.update(subtype="bot_message", bot_id="BOTHER01", username="deploys")
            del event["user"]
        bodies.append(event_body(event, f"EvN{tag}{k:08d}"))
    return bodies


def measure(
    servers: list[Server], channel_of: Any, bodies_for: Any, levels: tuple[int, ...]
) -> tuple[list[list[str]], list[list[str]], dict[str, dict[str, dict[str, float]]]]:
    """Every server, every level, the same requests (built for each run, signed just before it); the order of
    the servers alternates per level. Ratios are against the first server (the bare Bolt app)."""
    bare = servers[0]
    rows: list[list[str]] = []
    ratios: list[list[str]] = []
    results: dict[str, dict[str, dict[str, float]]] = {}
    for index, level in enumerate(levels):
        measured: dict[str, LoadResult] = {}
        order = servers if index % 2 == 0 else servers[::-1]  # alternate who goes first
        for server in order:
            channel = channel_of(server, level)
            measured[server.name] = run_load(server.port, sign(bodies_for(channel, level)), level)
        base = measured[bare.name]
        for server in servers:
            result = measured[server.name]
            rows.append(row(server.name, result))
            if result.errors:
                print(f"{server.name} c={level}: {len(result.errors)} connection errors, e.g. {result.errors[0]}")
            results.setdefault(server.name, {})[str(level)] = {
                "rate": result.rate,
                "ratio": result.rate / base.rate,
                "p50_ms": result.p(50) * 1000,
                "p95_ms": result.p(95) * 1000,
                "p99_ms": result.p(99) * 1000,
                "non_200": result.sent - result.ok,
            }
        for server in servers[1:]:
            ours = measured[server.name]
            ratios.append([server.name, str(level), f"{ours.rate:.0f}", f"{base.rate:.0f}",
                           f"{ours.rate / base.rate:.2f}x", f"{ours.p(99) / base.p(99):.2f}x"])
    return rows, ratios, results


def stored(db_path: Path, channel: str) -> tuple[int, int]:
    with sqlite3.connect(db_path) as conn:
        rows, people = conn.execute(
            "SELECT count(*), count(DISTINCT user_id) FROM answers WHERE channel = ?", (channel,)
        ).fetchone()
    conn.close()
    return int(rows), int(people)


def leaderboard_counts(slack_url: str, database_url: str, channel: str) -> tuple[int, int]:
    """(people on the in-process leaderboard, of whom counted exactly once)."""
    from bot.runtime import build_runtime
    from bot.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=BOT_TOKEN,
        slack_api_url=slack_url,
        database_url=database_url,
        drill_channel=channel,
    )
    runtime = build_runtime(settings, load_questions=False)
    try:
        rows = runtime.service.leaderboard(channel)
    finally:
        runtime.service.close()
        runtime.db.dispose()
    return len(rows), sum(1 for s in rows if s.total == 1)


def row(name: str, result: LoadResult) -> list[str]:
    bad = result.sent - result.ok
    return [
        name,
        str(result.concurrency),
        str(result.sent),
        f"{result.rate:.0f}",
        ms(result.p(50)),
        ms(result.p(95)),
        ms(result.p(99)),
        str(bad),
    ]


def main() -> int:
    args = parse_args(__doc__ or "", floor=True)
    users = 30 if args.quick else 1000
    noise_events = users * REPLIES_PER_USER
    warmup_events = 30 if args.quick else 300
    report = Report("Event ingestion (answers, and messages that are not)", args.quick)
    with workdir("ingest") as tmp, FakeSlackProcess(tmp) as fake:
        db_path = tmp / "drills.db"
        database_url = f"sqlite:///{db_path}"
        env = bot_env(slack_url=fake.url, database_url=database_url, drill_channel=None)
        bot = drillbot_server(env, tmp)
        bare = bare_bolt(fake.url, tmp)
        servers = [bare, bot]
        bots = servers[1:]
        servers.append(bare_bolt(fake.url, tmp, name=BOLT_ASGI_NAME, extra=["--server", "bolt-asgi"]))
        if args.floor:
            servers.append(bare_bolt(fake.url, tmp, name=FLOOR_NAME, extra=["--store", str(tmp / "floor.db")]))
        try:
            # drillbot first, alone: it creates the schema; the others start on the migrated database.
            bot.start().wait_healthy()
            for server in servers:
                if server is not bot:
                    server.start()
            for server in servers:
                server.wait_healthy()
            time.sleep(0.3 if args.quick else 1.0)
            rss_idle = bot.rss_mb()
            channels = {(server.name, c): f"CB{i}L{c:02d}" for i, server in enumerate(bots) for c in LEVELS}
            noise_channels = {(server.name, c): f"CN{i}L{c:02d}" for i, server in enumerate(bots) for c in LEVELS}
            warm_channels = {server.name: f"CB{i}WARM" for i, server in enumerate(servers)}
            drills = post_drills(
                fake.url, database_url, [*warm_channels.values(), *channels.values(), *noise_channels.values()]
            )

            # Warm every server up (first-request costs, caches, connection pools).
            for server in servers:
                channel = warm_channels[server.name]
                run_load(server.port, sign(reply_bodies(channel, drills[channel], warmup_events // 3, "W")), 8)

            def answer_channel(server: Server, level: int) -> str:
                # The bare apps get the same requests as drillbot (channel and all).
                return channels[(server.name if server in bots else bot.name, level)]

            def answers_for(channel: str, level: int) -> list[bytes]:
                return reply_bodies(channel, drills[channel], users, f"{level:02d}")

            rows, ratios, results = measure(servers, answer_channel, answers_for, LEVELS)

            # Messages that are not answers: the floor app would store them all, so it sits this one out.
            noisy = [server for server in servers if server.name != FLOOR_NAME]

            def noise_channel(server: Server, level: int) -> str:
                return noise_channels[(server.name if server in bots else bot.name, level)]

            def noise_for(channel: str, level: int) -> list[bytes]:
                return noise_bodies(channel, drills[channel], noise_events, f"{level:02d}")

            noise_rows, noise_ratios, noise_results = measure(noisy, noise_channel, noise_for, LEVELS)
            rss_after = bot.rss_mb()

            # Nothing lost: every acknowledged reply stored, every user counted exactly once.
            loss_rows = []
            lost_total = 0
            for server in bots:
                for level in LEVELS:
                    channel = channels[(server.name, level)]
                    expected = users * REPLIES_PER_USER
                    rows_stored, people = stored(db_path, channel)
                    on_board, once = leaderboard_counts(fake.url, database_url, channel)
                    acked = int(expected - results[server.name][str(level)]["non_200"])
                    lost = max(0, acked - rows_stored) + (users - once)
                    if server is bot:
                        lost_total += lost
                    loss_rows.append([server.name, str(level), f"{acked}/{expected}", f"{rows_stored}/{expected}",
                                      f"{people}/{users}", f"{once}/{users}", str(lost)])
            noise_stored = {
                server.name: sum(stored(db_path, noise_channels[(server.name, level)])[0] for level in LEVELS)
                for server in bots
            }
            lost_total += noise_stored[bot.name]  # a message that is not an answer, stored as one
            cli_channel = channels[(bot.name, 64)]
            cli_out, cli_seconds = drillbot_cli(env, tmp, "leaderboard", "--format", "json", "--channel", cli_channel)
            cli_rows = json.loads(cli_out)
            cli_once = sum(1 for r in cli_rows if r["total_answers"] == 1)
            lost_total += users - cli_once
        finally:
            for server in servers:
                server.stop()

    report.add(f"{users} users x {REPLIES_PER_USER} replies per level, one keep-alive connection per load thread; "
               "latency = request sent to response read, at the client. A connection reset counts as non-200.")
    report.table(("server", "concurrency", "events", "events/s", "p50 ms", "p95 ms", "p99 ms", "non-200"), rows)
    report.table(("server", "concurrency", "events/s", "bare Bolt events/s", "throughput ratio", "p99 ratio"),
                 ratios)
    report.add(f"Messages that are not answers, {noise_events} per level into a channel with an open drill: half "
               "top-level chatter, a quarter replies in other threads, a quarter bot messages.")
    report.table(("server", "concurrency", "events", "events/s", "p50 ms", "p95 ms", "p99 ms", "non-200"), noise_rows)
    report.table(("server", "concurrency", "events/s", "bare Bolt events/s", "throughput ratio", "p99 ratio"),
                 noise_ratios)
    report.table(("server", "non-answers stored as answers"), [(n, str(c)) for n, c in noise_stored.items()])
    report.table(("server", "concurrency", "acked (200)", "replies stored", "distinct users stored",
                  "users counted once (leaderboard)", "lost"), loss_rows)
    report.add(f"`drillbot leaderboard --format json --channel {cli_channel}` (the c=64 run): {len(cli_rows)} "
               f"people, {cli_once} counted exactly once ({cli_seconds:.2f} s wall).")
    report.table(("drillbot resident memory", "MB"), [("idle after start", f"{rss_idle:.1f}"),
                                                        ("after the ingestion runs", f"{rss_after:.1f}")])
    report.metrics.update(servers=results, non_answers=noise_results, lost=lost_total, rss_idle_mb=rss_idle,
                          rss_after_mb=rss_after, users=users)
    ours = results[bot.name]

    def against(phase: dict[str, Any], server: str) -> dict[int, float]:
        return {level: phase[bot.name][str(level)]["rate"] / phase[server][str(level)]["rate"] for level in LEVELS}

    # Each goal against both baselines of the same run: the bare app behind drillbot's own edge and server
    # (drillbot's cost alone), and under Bolt's ASGI adapter (the server's cost too).
    for phase, what, floor in ((results, "answers", 0.8), (noise_results, "non-answers", 1.0)):
        baselines = (("bare Bolt", "bare Bolt behind drillbot's server"), (BOLT_ASGI_NAME, "Bolt's ASGI adapter"))
        for server, label in baselines:
            ratios = against(phase, server)
            report.goal(f"{what} vs {label}, c=1/16/64", f">= {floor:.1f}x at each",
                        " / ".join(f"{ratios[level]:.2f}x" for level in LEVELS), min(ratios.values()) >= floor)
    top = ours["64"]
    report.goal("answers p99 ack, c=64", "< 100 ms", f"{top['p99_ms']:.1f} ms", top["p99_ms"] < 100)
    report.goal("events lost", "0", str(lost_total), lost_total == 0)
    report.goal("idle memory (drillbot run, ingest bench)", "< 120 MB", f"{rss_idle:.1f} MB", rss_idle < 120)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
