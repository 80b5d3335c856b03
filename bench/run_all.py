"""Run every benchmark and write one markdown report.

    .venv/bin/python bench/run_all.py [--quick] [--out bench/results.md]

Runs bench/startup.py, ingest.py, answer_cost.py, slash_ack.py, leaderboard.py, reveal_lateness.py and
slowloris.py one after another (each in its own process, each printing as it goes), then writes the machine,
every script's tables and one table of all the goals to --out (default: bench/results.md) and prints that table.
ingest.py also measures the bare Bolt app storing each reply with one SQLite insert.
Exit status 1 if a script failed (not if a goal is missed: that is what is reported).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, table  # noqa: E402

BENCH = Path(__file__).resolve().parent
SCRIPTS = (
    "startup.py", "ingest.py", "answer_cost.py", "slash_ack.py", "leaderboard.py", "reveal_lateness.py", "slowloris.py"
)


def _git(*args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=BENCH.parent, capture_output=True, text=True, timeout=30)
    except OSError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (what the smoke test runs)")
    parser.add_argument("--out", type=Path, default=BENCH / "results.md")
    args = parser.parse_args()
    info = machine()
    sections: list[str] = []
    goals: list[tuple[str, str, str, str, str]] = []
    failed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="drillbot-bench-all-") as tmp:
        for script in SCRIPTS:
            out = Path(tmp) / f"{script}.json"
            argv = [sys.executable, str(BENCH / script), "--json", str(out)]
            if args.quick:
                argv.append("--quick")
            if script == "ingest.py":
                argv.append("--floor")
            print(f"\n=== {script} ===", flush=True)
            script_started = time.perf_counter()
            code = subprocess.run(argv).returncode
            elapsed = time.perf_counter() - script_started
            if code != 0 or not out.exists():
                failed.append(script)
                sections.append(f"## {script}\n\nFAILED (exit {code}) after {elapsed:.0f} s.\n")
                continue
            data = json.loads(out.read_text())
            sections.append(data["markdown"].rstrip() + f"\n\n({script}: {elapsed:.0f} s)\n")
            for g in data["goals"]:
                goals.append((data["title"], g["goal"], g["target"], g["measured"], "met" if g["met"] else "NOT met"))
    total = time.perf_counter() - started
    revision = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "bot", "storage")
    revision += " + uncommitted changes in bot/ or storage/" if dirty else ""
    command = " ".join(["python bench/run_all.py", *(["--quick"] if args.quick else [])])
    header = (
        "# drillbot benchmark results\n\n"
        f"- machine: {info['nproc']} CPUs, {info['cpu']}; Python {info['python']}; "
        f"load average at the start {info['load_average']}\n"
        f"- code measured: {revision}\n"
        f"- command: `.venv/bin/{command}` ({total:.0f} s)"
        + (" -- QUICK sizes, not the real figures" if args.quick else "")
        + "\n"
    )
    goals_md = "## Goals\n\n" + table(("benchmark", "goal", "target", "measured", "verdict"), goals)
    args.out.write_text("\n".join([header, goals_md, "", *sections]))
    print("\n" + goals_md + f"\n\nwritten to {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
