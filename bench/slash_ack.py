"""`/interview-question` acknowledgement latency at concurrency 1 and 16, measured at the HTTP client.

    .venv/bin/python bench/slash_ack.py [--quick] [--json out.json]

Signed slash commands (a practice question: empty text, a different user each) go to a running
`drillbot run --http` (subprocess, SQLite in a temp dir, the fake Slack in another process); the
latency is from sending the request to reading the whole 200 ack. drillbot acks at once and answers
through response_url from its own executor; after the runs every command's response_url post is checked
to have arrived. Baselines in the same run, with the same requests: the bare Bolt app of
bench/ingest.py whose command listener only acks (built like bot/app.py: process_before_response=True),
and the same app with Bolt's default config (process_before_response=False), where the request thread
polls for the ack every 10 ms (slack_bolt/listener/thread_runner.py): the third row shows whether that
10 ms floor is on a path. 1,000 commands per level (--quick: 40).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    FakeSlackProcess,
    LoadResult,
    Report,
    bare_bolt,
    bot_env,
    command_body,
    drillbot_server,
    ms,
    parse_args,
    run_load,
    sign,
    workdir,
)

LEVELS = (1, 16)
DRAIN_SECONDS = 60
FORM = "application/x-www-form-urlencoded"


def bodies(fake: FakeSlackProcess, count: int, tag: str) -> list[bytes]:
    return [
        command_body("", user_id=f"U{tag}{i:06d}", response_url=fake.response_url(f"{tag}{i}"))
        for i in range(count)
    ]


def drained(fake: FakeSlackProcess, expected: int) -> int:
    """Wait until `expected` more response_url posts have arrived (or stopped arriving); returns how many."""
    start = getattr(fake, "_answered_seen", 0)
    deadline = time.monotonic() + DRAIN_SECONDS
    seen, last_change, last = start, time.monotonic(), start
    while time.monotonic() < deadline:
        seen = fake.counts().get("response_url", 0)
        if seen - start >= expected:
            break
        if seen != last:
            last, last_change = seen, time.monotonic()
        elif time.monotonic() - last_change > 10:  # nothing new for 10 s: the rest is not coming
            break
        time.sleep(0.05)
    fake._answered_seen = seen  # type: ignore[attr-defined]
    return seen - start


def main() -> int:
    args = parse_args(__doc__ or "")
    count = 40 if args.quick else 1000
    warmup = 10 if args.quick else 100
    report = Report("Slash-command ack latency", args.quick)
    with workdir("slash") as tmp, FakeSlackProcess(tmp) as fake:
        env = bot_env(slack_url=fake.url, database_url=f"sqlite:///{tmp / 'drills.db'}", drill_channel=None)
        bot = drillbot_server(env, tmp)
        servers = [bare_bolt(fake.url, tmp), bot, bare_bolt(fake.url, tmp, config="default")]
        answering = [s for s in servers if s.name.startswith("drillbot")]
        try:
            # drillbot first, alone: it creates the schema; the others start on the migrated database.
            bot.start().wait_healthy()
            for server in servers:
                if server is not bot:
                    server.start()
            for server in servers:
                server.wait_healthy()
            answered_by: dict[str, int] = {s.name: 0 for s in answering}
            sent_by: dict[str, int] = {s.name: 0 for s in answering}
            for server in servers:
                run_load(server.port, sign(bodies(fake, warmup, "W"), FORM), 4, timeout=60)
                if server in answering:
                    sent_by[server.name] += warmup
                    answered_by[server.name] += drained(fake, warmup)
            results: dict[tuple[str, int], LoadResult] = {}
            for index, level in enumerate(LEVELS):
                order = servers if index % 2 == 0 else servers[::-1]
                for server in order:
                    requests = sign(bodies(fake, count, f"L{level}"), FORM)  # signed just before the run
                    results[(server.name, level)] = run_load(server.port, requests, level, timeout=60)
                    if server in answering:
                        # Wait for its answers before the next server runs: no overlap between servers.
                        sent_by[server.name] += count
                        answered_by[server.name] += drained(fake, count)
            for server in answering:
                if answered_by[server.name] < sent_by[server.name]:
                    errors = [line for line in server.log_path.read_text(errors="replace").splitlines()
                              if "ERROR" in line or "Error" in line][:5]
                    print(f"{server.name}: {sent_by[server.name] - answered_by[server.name]} commands not answered; "
                          "first errors in its log:\n" + "\n".join(errors or ["(none)"]), flush=True)
        finally:
            for server in servers:
                server.stop()

    rows = []
    for level in LEVELS:
        for server in servers:
            r = results[(server.name, level)]
            floor = sum(1 for x in r.latencies if x >= 0.010) / r.sent
            rows.append([server.name, str(level), str(r.sent), f"{r.rate:.0f}", ms(min(r.latencies)), ms(r.p(50)),
                         ms(r.p(95)), ms(r.p(99)), f"{floor:.0%}", str(r.sent - r.ok)])
    report.add(f"{count} commands per level; latency = request sent to the 200 ack read, at the client; "
               "'>= 10 ms' = share of requests at or above Bolt's ack-polling interval.")
    report.table(("server", "concurrency", "commands", "commands/s", "min ms", "p50 ms", "p95 ms", "p99 ms",
                  ">= 10 ms", "non-200"), rows)
    base_name = servers[0].name
    ratio_rows = []
    for server in answering:
        for level in LEVELS:
            ours, base = results[(server.name, level)], results[(base_name, level)]
            ratio_rows.append([server.name, str(level), f"{ours.p(50) / base.p(50):.2f}x",
                               f"{ours.p(99) / base.p(99):.2f}x"])
    report.table(("server", "concurrency", "p50 vs bare Bolt", "p99 vs bare Bolt"), ratio_rows)
    sent_to_bots, answered = sum(sent_by.values()), sum(answered_by.values())
    report.table(("server", "commands sent (warm-up included)", "answered through response_url"),
                 [(name, str(sent_by[name]), str(answered_by[name])) for name in sent_by])
    metrics = {
        f"{name}|{level}": {"p50_ms": r.p(50) * 1000, "p95_ms": r.p(95) * 1000, "p99_ms": r.p(99) * 1000,
                            "rate": r.rate, "non_200": r.sent - r.ok}
        for (name, level), r in results.items()
    }
    report.metrics.update(results=metrics, answered=answered, sent=sent_to_bots)
    ours = results[("drillbot", 16)]
    report.goal("slash ack p50, c=16", "< 5 ms", f"{ours.p(50) * 1000:.1f} ms", ours.p(50) < 0.005)
    report.goal("slash ack p99, c=16", "< 50 ms", f"{ours.p(99) * 1000:.1f} ms", ours.p(99) < 0.050)
    report.goal("every acked command answered", f"{sent_to_bots}", f"{answered}",
                answered == sent_to_bots and ours.ok == ours.sent)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
