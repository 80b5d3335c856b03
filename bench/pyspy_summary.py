"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the samples go.

    py-spy record --nonblocking -r 200 -f raw -o prof.raw -p PID -d 20
    python bench/pyspy_summary.py prof.raw [--root 'SlackEdge._slack'] [--top 30]

Prints, for the samples whose stack contains --root (default: all), the share of samples spent inside
each function (inclusive, counted once per stack) and the share spent in each function itself (self).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \([^()]*:\d+\)")


def frames_of(stack: str) -> list[str]:
    """'f (file.py:12);g (other.py:3)' -> ['f (file.py)', 'g (other.py)'] (line numbers dropped)."""
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        path = where.rsplit(":", 1)[0]
        out.append(f"{name} ({path})" if path else name)
    return out


def summarise(path: Path, root: str | None, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    everything = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        everything += count
        frames = frames_of(stack)
        if root is not None:
            positions = [i for i, f in enumerate(frames) if f.startswith(root)]
            if not positions:
                continue
            frames = frames[positions[0]:]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    share = total / max(everything, 1)
    lines = [f"{total} of {everything} samples" + (f" under {root}" if root else "") + f" ({share:.0%})"]
    lines.append("\ninclusive (share of those samples):")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    lines.append("\nself:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--root", default=None)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    print(summarise(args.profile, args.root, args.top))


if __name__ == "__main__":
    main()
