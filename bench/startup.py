"""Start-up: seconds from starting `drillbot run --http` to its first /healthz 200, and idle memory.

    .venv/bin/python bench/startup.py [--quick] [--json out.json]

The process is started (subprocess, SQLite in a temp dir, the bundled question bank, a fake Slack in
this process answering auth.test) and /healthz is polled every 5 ms. The first start creates the schema
(Alembic migrations on an empty database); the next 5 (--quick: 2) restart on the existing database,
and their median is the figure. Resident memory (VmRSS) is read once the process has been idle a
moment after /healthz. Baseline in the same run: `python -c pass` and `python -c "import bot.cli"`
(the interpreter, and importing drillbot and its dependencies).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Report, bot_env, drillbot_server, parse_args, workdir  # noqa: E402


def python_wall(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    args = parse_args(__doc__ or "")
    from tests.fakes.slack import FakeSlack

    restarts = 2 if args.quick else 5
    settle = 0.5 if args.quick else 2.0
    report = Report("Start-up and idle memory", args.quick)
    fake = FakeSlack().start()
    runs: list[tuple[str, float, float]] = []
    try:
        with workdir("startup") as tmp:
            env = bot_env(slack_url=fake.url, database_url=f"sqlite:///{tmp / 'drills.db'}", drill_channel="CSTART01")
            for attempt in range(restarts + 1):
                with drillbot_server(env, tmp) as bot:
                    bot.start()
                    seconds = bot.wait_healthy(interval=0.005)
                    time.sleep(settle)
                    rss = bot.rss_mb()
                label = "first start (empty database: migrations)" if attempt == 0 else f"restart {attempt}"
                runs.append((label, seconds, rss))
        interpreter = python_wall("pass", 3)
        imports = python_wall("import bot.cli, bot.runtime", 3)
    finally:
        fake.stop()

    rows = [(label, f"{seconds:.2f}", f"{rss:.1f}") for label, seconds, rss in runs]
    restart_times = [seconds for _, seconds, _ in runs[1:]]
    restart_rss = [rss for _, _, rss in runs[1:]]
    median = statistics.median(restart_times)
    rss_median = statistics.median(restart_rss)
    rows.append((f"median of {restarts} restarts", f"{median:.2f}", f"{rss_median:.1f}"))
    rows.append(("baseline: python -c pass", f"{interpreter:.2f}", ""))
    rows.append(("baseline: python -c 'import bot.cli, bot.runtime'", f"{imports:.2f}", ""))
    report.add(f"/healthz polled every 5 ms; RSS read {settle:.1f} s after the first 200.")
    report.table(("run", "start -> /healthz 200 (s)", "idle RSS (MB)"), rows)
    report.metrics.update(first_s=runs[0][1], median_s=median, rss_mb=rss_median, interpreter_s=interpreter,
                          imports_s=imports)
    report.goal("/healthz after start (median restart)", "< 2 s", f"{median:.2f} s", median < 2.0)
    report.goal("/healthz after first start (migrations)", "< 2 s", f"{runs[0][1]:.2f} s", runs[0][1] < 2.0)
    report.goal("idle memory (drillbot run)", "< 120 MB", f"{rss_median:.1f} MB", rss_median < 120)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
