"""Profile a running `drillbot run --http` under the ingestion or slash-command load, with py-spy.

    .venv/bin/pip install py-spy          # not a project dependency
    .venv/bin/python bench/profile.py ingest [--concurrency 16] [--events 6000] [--gil]
    .venv/bin/python bench/profile.py slash  [--concurrency 16] [--events 3000] [--gil]

Starts the fake Slack and drillbot as bench/ingest.py and bench/slash_ack.py do, warms it up, then
records the drillbot process with `py-spy record --nonblocking` (200 Hz) while the load runs, and prints
where the samples go (bench/pyspy_summary.py): all threads, then (ingest) only the answer intake's
storing of the groups (`Answers.record_replies`), or (slash) only the request path on the request
threads (SlackEdge._slack: parse and Bolt's dispatch; the event loop's share is in "all threads"), then
(slash) the lazy listener. With --gil only the thread holding the GIL is sampled: where the CPU goes,
rather than where the threads wait. The raw profile is kept (--out).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ingest, slash_ack  # noqa: E402
from bench._common import (  # noqa: E402
    FakeSlackProcess,
    bot_env,
    drillbot_server,
    ms,
    run_load,
    sign,
    workdir,
)
from bench.pyspy_summary import summarise  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=("ingest", "slash"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--events", type=int, default=None, help="requests to send while recording")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument("--out", type=Path, default=Path("drillbot-profile.raw"))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    count = args.events or (6000 if args.scenario == "ingest" else 3000)
    with workdir("profile") as tmp, FakeSlackProcess(tmp) as fake:
        url = f"sqlite:///{tmp / 'drills.db'}"
        env = bot_env(slack_url=fake.url, database_url=url, drill_channel=None)
        bot = drillbot_server(env, tmp).start()
        try:
            bot.wait_healthy()
            if args.scenario == "ingest":
                drills = ingest.post_drills(fake.url, url, ["CPWARM", "CPROF"])
                run_load(bot.port, sign(ingest.reply_bodies("CPWARM", drills["CPWARM"], 100, "W")), 8)
                requests = sign(ingest.reply_bodies("CPROF", drills["CPROF"], count // 3, "P"))
                content = "application/json"
            else:
                content = "application/x-www-form-urlencoded"
                run_load(bot.port, sign(slash_ack.bodies(fake, 100, "W"), content), 4)
                requests = sign(slash_ack.bodies(fake, count, "P"), content)
            argv = [spy, "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", str(args.out),
                    "-p", str(bot.pid)]
            if args.gil:
                argv.append("--gil")
            recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
            result = run_load(bot.port, requests, args.concurrency)
            recorder.send_signal(signal.SIGINT)
            _out, err = recorder.communicate(timeout=60)
            if not args.out.exists():
                print(f"py-spy wrote nothing: {err.decode(errors='replace')}", file=sys.stderr)
                return 1
        finally:
            bot.stop()
    print(f"{args.scenario}, c={args.concurrency}: {result.sent} requests, {result.rate:.0f}/s, "
          f"p50 {ms(result.p(50))} ms, p99 {ms(result.p(99))} ms; profile in {args.out}"
          f"{' (GIL holder only)' if args.gil else ' (all non-idle threads)'}\n")
    print(summarise(args.out, None, args.top))
    if args.scenario == "ingest":
        # Answers never take a request thread: the edge hands them to the answer intake, which stores them
        # on the event loop (or its writer thread when the loop would wait).
        print("\n--- the answer intake only (storing the groups) ---")
        print(summarise(args.out, "Answers.record_replies", args.top))
    else:
        print("\n--- request path only ---")
        print(summarise(args.out, "SlackEdge._slack", args.top))
    if args.scenario == "slash":
        print("\n--- lazy listener (the answer through response_url) ---")
        print(summarise(args.out, "command_responder.<locals>.answer_command", args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
