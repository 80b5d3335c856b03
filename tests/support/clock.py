"""Injected time: one `FakeClock`, and `wait_ticks` to know the bot's scheduler has looked at it.

A FakeClock is what `build_runtime(clock=...)` / `start_bot(clock=...)` call for "now". It reads the real
time until the test sets it; `make_clock(moment)` is stopped at `moment`, `make_clock(moment, running=True)`
runs at real speed from `moment`. `set` and `advance` move it; bots started with it are told (their
scheduler runs its jobs at once), so a test moves time and waits for the outcome, not for the next tick.

`wait_ticks(bot)` returns once every scheduler job has run to completion at least `runs` times since the
call: what "nothing else happened" assertions need. It counts the scheduler's own job events, and starts
those runs at once instead of waiting for the interval.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler

from tests.support.waiting import eventually

__all__ = ["FakeClock", "poke", "wait_ticks"]


class FakeClock:
    """A settable "now": real time until set; stopped at a moment; or running from a moment."""

    def __init__(self, moment: datetime | None = None, *, running: bool = False) -> None:
        self._lock = threading.Lock()
        self._moment = moment  # None: the real time (plus the offset)
        self._running = running
        self._t0 = time.monotonic()
        self._offset = timedelta(0)
        self._listeners: list[Callable[[], None]] = []
        self.reads = 0

    def __call__(self) -> datetime:
        with self._lock:
            self.reads += 1
            return self._read()

    def now(self) -> datetime:
        return self()

    def _read(self) -> datetime:
        if self._moment is None:
            return datetime.now(UTC) + self._offset
        if self._running:
            return self._moment + timedelta(seconds=time.monotonic() - self._t0) + self._offset
        return self._moment + self._offset

    @property
    def moment(self) -> datetime:
        """Now, without counting as a read."""
        with self._lock:
            return self._read()

    def set(self, moment: datetime) -> None:
        """Now is `moment` (a running clock keeps running from there; a real-time clock stops there)."""
        with self._lock:
            self._moment, self._offset, self._t0 = moment, timedelta(0), time.monotonic()
        self._changed()

    def advance(self, **delta: float) -> None:
        """Jump forward (or back) by `timedelta(**delta)`."""
        with self._lock:
            self._offset += timedelta(**delta)
        self._changed()

    def ts(self) -> str:
        """A Slack message ts for now on this clock."""
        return f"{self().timestamp():.6f}"

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` whenever the clock is moved; returns the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()


def _scheduler_of(target: Any) -> BaseScheduler:
    scheduler = getattr(target, "scheduler", target)
    assert isinstance(scheduler, BaseScheduler), f"{target!r} has no APScheduler scheduler"
    return scheduler


def poke(target: Any) -> None:
    """Start every job of a running scheduler (a Bot's, or a scheduler) now instead of at its next tick."""
    scheduler = _scheduler_of(target)
    if not scheduler.running:
        return
    now = datetime.now(UTC)
    for job in scheduler.get_jobs():
        if job.next_run_time is None:  # paused by the test: it stays paused
            continue
        try:
            job.modify(next_run_time=now)
        except LookupError:  # removed meanwhile (the scheduler is stopping)
            pass


class _Runs:
    """Counts completed runs per job, by their scheduled time (the scheduler's own events)."""

    def __init__(self, scheduler: BaseScheduler) -> None:
        self.lock = threading.Lock()
        self.done: dict[str, list[datetime]] = defaultdict(list)
        scheduler.add_listener(self._record, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def _record(self, event: JobExecutionEvent) -> None:
        with self.lock:
            self.done[event.job_id].append(event.scheduled_run_time)

    def since(self, job_id: str, moment: datetime) -> int:
        with self.lock:
            return sum(1 for scheduled in self.done[job_id] if scheduled >= moment)


_observed: weakref.WeakKeyDictionary[BaseScheduler, _Runs] = weakref.WeakKeyDictionary()
_observed_lock = threading.Lock()


def wait_ticks(target: Any, runs: int = 2, timeout: float = 10.0) -> None:
    """Every job of the scheduler (of a Bot, or a scheduler) has completed `runs` runs started after now."""
    scheduler = _scheduler_of(target)
    with _observed_lock:
        observer = _observed.get(scheduler)
        if observer is None:
            observer = _observed[scheduler] = _Runs(scheduler)
    mark = datetime.now(UTC)
    jobs = [job.id for job in scheduler.get_jobs()]
    assert jobs, "the scheduler has no jobs (is it running?)"
    poked = mark

    def done() -> bool:
        nonlocal poked
        if all(observer.since(job, mark) >= runs for job in jobs):
            return True
        # Start the next round at once rather than after the interval (a job still running skips it).
        if datetime.now(UTC) - poked > timedelta(seconds=0.05):
            poked = datetime.now(UTC)
            poke(scheduler)
        return False

    poke(scheduler)
    eventually(done, timeout, interval=0.01, what=f"{runs} scheduler runs of every job ({', '.join(jobs)})")


@pytest.fixture
def make_clock() -> Callable[..., FakeClock]:
    """`make_clock(moment=None, running=False)`: a new FakeClock (real time when no moment is given)."""
    return FakeClock


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """A FakeClock on the real time until the test sets it."""
    yield FakeClock()


@pytest.fixture(name="wait_ticks")
def wait_ticks_fixture() -> Callable[..., None]:
    """`wait_ticks(bot, runs=2)`: every scheduler job has completed `runs` runs since the call."""
    return wait_ticks
