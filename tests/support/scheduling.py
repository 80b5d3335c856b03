"""Test distribution under pytest-xdist (`-n 4`, the README's command).

The suite mostly waits on sockets, so four workers share the two cores well; but the modules that start
real processes (start-ups, signals, stop deadlines, a load test, the benchmark smoke run) would compete
with each other for CPU. They run on one worker, one after another, as in a serial run, while the
in-process tests are spread over the others one by one. (xdist's own `--dist loadgroup` would say this
with marks, but it does not group on pytest 9.2: pytest-dev/pytest-xdist#1386.)
"""

from __future__ import annotations

from typing import Any

import pytest

# The modules whose tests start several `python -m bot` processes at once, or time a stop deadline. Tests
# elsewhere that start one short process at a time (marked `subprocess` too) need no such care.
PROCESS_MODULES = frozenset(
    {
        "tests/test_bench_smoke.py",
        "tests/test_replicas.py",
        "tests/test_sigterm.py",
        "tests/test_sqlite_concurrency.py",
    }
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "load":  # an explicit --dist choice wins
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ProcessesTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "processes" if nodeid.split("::", 1)[0] in PROCESS_MODULES else nodeid

    return ProcessesTogether(config, log)
