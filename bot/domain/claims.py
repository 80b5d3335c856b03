"""When a process may take over a step (post or reveal) that another attempt started.

An owner is `host:pid:nonce`. A step whose owner is gone (same host, pid not running, or this very pid
with another nonce, i.e. an earlier life of a restarted container) can be taken over at once; an owner on
another host is trusted until its lease runs out. A step released after an uncertain failure (timeout,
5xx) waits a growing delay before the next attempt: 5 s, 10 s, 20 s ... up to 5 minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

__all__ = ["LEASE", "Owner", "can_take_over", "retry_delay"]

LEASE = timedelta(minutes=10)
FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 300


def retry_delay(attempts: int) -> timedelta:
    seconds = FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, MAX_RETRY_SECONDS))


class Owner:
    def __init__(self, host: str, pid: int, nonce: str) -> None:
        self.host, self.pid, self.nonce = host, pid, nonce

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"

    def is_gone(
        self, claimed_by: str, *, pid_alive: Callable[[int], bool], live_nonces: Collection[str] = ()
    ) -> bool:
        """Whether the owner named by `claimed_by` has certainly stopped.

        `live_nonces` are the owners alive in this very process (several services may share one).
        """
        host, _, rest = claimed_by.partition(":")
        pid_text, _, nonce = rest.partition(":")
        if host != self.host or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == self.pid:
            return nonce != self.nonce and nonce not in live_nonces
        return not pid_alive(pid)


def can_take_over(
    *,
    claimed_by: str | None,
    claimed_at: datetime | None,
    attempts: int,
    now: datetime,
    me: Owner,
    pid_alive: Callable[[int], bool],
    live_nonces: Collection[str] = (),
) -> bool:
    if claimed_at is None:
        return True
    if claimed_by is None:
        return now >= claimed_at + retry_delay(attempts)
    if claimed_by == str(me):
        return False
    return me.is_gone(claimed_by, pid_alive=pid_alive, live_nonces=live_nonces) or now >= claimed_at + LEASE
