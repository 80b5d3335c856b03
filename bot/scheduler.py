"""The scheduler: two reconcile jobs that make Slack match the database.

`post` asks whether today's drill is due (DRILL_SCHEDULE) and not yet posted; `reveal` reveals every
drill whose deadline has passed. Both run every DRILL_TICK_SECONDS and decide only from the database,
so a drill posted by `drillbot post` in another process, or one whose deadline passed while the bot was
down, is handled just the same. One scheduler per process; each job never overlaps itself.

Each run is logged (DEBUG when it found nothing to do, INFO when it did something; `job`, `outcome`,
`duration_ms` as fields) and, with metrics, counted by job and outcome and timed; an APScheduler listener
measures the lag, how late each run started after its scheduled time, which grows when the worker pool
is saturated or the process is starved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from bot.drills import DrillService
from bot.logs import bind
from bot.metrics import Metrics

__all__ = ["build_scheduler"]

log = logging.getLogger(__name__)
REPEAT_LOG_SECONDS = 300


class _QuietRepeats:
    """Runs a job, logging a failure with its traceback once, then at most every few minutes."""

    def __init__(self, name: str, job: Callable[[], Any], metrics: Metrics | None = None) -> None:
        self.name, self.job, self.metrics = name, job, metrics
        self.last: tuple[str, float] | None = None
        # Wall-clock start of each run not yet matched with its "executed" event (runs never overlap,
        # but the next run may start before the previous run's event is dispatched).
        self.starts: deque[datetime] = deque(maxlen=8)
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.starts.append(datetime.now(UTC))
        started = time.perf_counter()
        outcome, result = "ok", None
        with bind(job=self.name):
            try:
                result = self.job()
                self.last = None
            except Exception as exc:
                outcome = "error"
                key = f"{exc.__class__.__name__}: {exc}"
                now = time.monotonic()
                if self.last is None or self.last[0] != key or now - self.last[1] > REPEAT_LOG_SECONDS:
                    log.error("job %s failed: %s", self.name, key, exc_info=True)
                    self.last = (key, now)
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.job_run(self.name, outcome, seconds, finished_at=time.time())
        level = logging.INFO if (result and outcome == "ok") else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(
                level,
                "job %s: %s in %.1f ms%s",
                self.name,
                outcome,
                seconds * 1000,
                f" ({_summary(result)})" if result else "",
                extra={"job": self.name, "outcome": outcome, "duration_ms": round(seconds * 1000, 2)},
            )

    def started_for(self, scheduled: datetime) -> datetime | None:
        """When the run scheduled for `scheduled` started: the first recorded start not before it."""
        with self._lock:
            while self.starts and self.starts[0] < scheduled:  # a run is never started before its time
                self.starts.popleft()
            return self.starts.popleft() if self.starts else None


def _summary(result: Any) -> str:
    if isinstance(result, list | tuple | set):
        return f"{len(result)} done"
    return str(result)[:80]


def _lag_listener(jobs: dict[str, _QuietRepeats], metrics: Metrics) -> Callable[[JobEvent], None]:
    def listener(event: JobEvent) -> None:
        try:
            job = jobs.get(event.job_id)
            if job is None:
                return
            if event.code == EVENT_JOB_MAX_INSTANCES:  # the previous run was still going: this one is skipped
                metrics.job_run(job.name, "skipped")
                return
            if not isinstance(event, JobExecutionEvent):
                return
            started = job.started_for(event.scheduled_run_time)
            if started is not None:
                metrics.job_started_late(job.name, (started - event.scheduled_run_time).total_seconds())
        except Exception:  # a metric never breaks the scheduler
            log.debug("scheduler metrics listener failed", exc_info=True)

    return listener


def build_scheduler(
    service: DrillService, *, tick_seconds: float, metrics: Metrics | None = None
) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(max_workers=4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    start = datetime.now(UTC)
    jobs = (
        ("post", service.post_if_due),
        ("reveal", service.reveal_due),
        ("live_counts", service.refresh_live_counts),
        ("reminders", service.send_reminders),
        ("feedback", service.send_feedback),
        ("digest", service.send_digest),
    )
    wrapped: dict[str, _QuietRepeats] = {}
    for name, job in jobs:
        wrapped[name] = _QuietRepeats(name, job, metrics)
        scheduler.add_job(wrapped[name], "interval", seconds=tick_seconds, id=name, name=name, next_run_time=start)
    if metrics is not None:
        scheduler.add_listener(
            _lag_listener(wrapped, metrics), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES
        )
    return scheduler
