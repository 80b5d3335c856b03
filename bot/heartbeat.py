"""Lease heartbeats: while a step holds a claim, every Slack call and every wait before a retry renews it.

A claim is trusted only until its lease runs out (`bot.domain.claims.LEASE`), and slack-sdk may sleep
inside one call for a long while (a 429's Retry-After, many times over). The step installs a renewal
callback here for its duration; the Slack edge calls `beat()` before each call and each retry, so a
live owner's claim never looks abandoned, and a process that cannot renew (it lost the claim) says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator

__all__ = ["beat", "renewing"]

log = logging.getLogger(__name__)
_renew: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("drillbot_renew", default=None)


@contextlib.contextmanager
def renewing(renew: Callable[[], None]) -> Iterator[None]:
    token = _renew.set(renew)
    try:
        yield
    finally:
        _renew.reset(token)


def beat() -> None:
    """Renew the current step's lease, if a step is running on this thread; never raises."""
    renew = _renew.get()
    if renew is None:
        return
    try:
        renew()
    except Exception:  # a heartbeat must never break the Slack call it rides on
        log.debug("could not renew the step's lease", exc_info=True)
