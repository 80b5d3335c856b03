"""tests/fakes/slack.py as a process of its own: prints its API URL, serves until stdin closes.

The benchmarks run it apart from the load generator so that serving Slack calls (auth.test, and the
response_url posts of slash commands) does not compete for the load generator's GIL. One extra method,
`bench.stats`, answers how many calls of each method it has received.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.slack import FakeSlack  # noqa: E402


class CountingFakeSlack(FakeSlack):
    def _dispatch(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if method == "bench.stats":
            with self.lock:
                counts = Counter(call.method for call in self.calls)
            return 200, {"ok": True, "counts": dict(counts)}
        return super()._dispatch(method, params, headers)


def main() -> None:
    fake = CountingFakeSlack().start()
    print(fake.url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or exits)
    fake.stop()


if __name__ == "__main__":
    main()
