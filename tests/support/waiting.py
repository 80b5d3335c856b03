"""`eventually`: wait for something the test can observe, never for a guessed while."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["eventually"]


def eventually(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    what: str | None = None,
    check: Callable[[], None] | None = None,
) -> Any:
    """The first truthy value of `predicate()`; an AssertionError naming `what` after `timeout` seconds.

    `check` runs before each try and may raise to give up early (a process that exited, say).
    """
    end = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            name = what or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout}s waiting for {name}")
        time.sleep(interval)


@pytest.fixture(name="eventually")
def eventually_fixture() -> Callable[..., Any]:
    """`eventually(predicate, timeout=10, what=...)`: the first truthy value of the predicate."""
    return eventually
