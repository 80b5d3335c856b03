"""When a process may start or take over a step (post, reveal, sealed answers) that another attempt began.

A claim names its owner (`host:pid:nonce`, unique per process start, used in logs) and is trusted only
until its lease runs out: replicas may share a hostname and a PID (containers on the host network, each
PID 1), so neither says whether the owner is alive. The owner renews the lease while it waits on Slack
(`bot.heartbeat`), so only a silent owner loses its claim; a restart therefore resumes its own unfinished
steps at most one lease later. A step released after an uncertain failure (timeout, 5xx) waits a
growing delay before the next attempt: 5 s, 10 s, 20 s ... up to 5 minutes.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

__all__ = ["LEASE", "Owner", "can_take_over", "retry_delay"]

LEASE = timedelta(minutes=2)
FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 300


def retry_delay(attempts: int) -> timedelta:
    seconds = FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, MAX_RETRY_SECONDS))


class Owner:
    """Who holds a claim: a name unique to this process start (a fresh random nonce each time)."""

    def __init__(self, host: str | None = None, pid: int | None = None, nonce: str | None = None) -> None:
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.nonce = nonce if nonce is not None else secrets.token_hex(6)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"


def can_take_over(
    *, claimed_by: str | None, claimed_at: datetime | None, attempts: int, now: datetime, me: Owner | str
) -> bool:
    """Unclaimed: once the retry delay has passed. Claimed by anyone (even this process): once the lease ran out."""
    if claimed_at is None:
        return True
    if claimed_by is None:
        return now >= claimed_at + retry_delay(attempts)
    return now >= claimed_at + LEASE
