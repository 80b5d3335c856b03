"""The scheduler: two reconcile jobs that make Slack match the database.

`post` asks whether today's drill is due (DRILL_SCHEDULE) and not yet posted; `reveal` reveals every
drill whose deadline has passed. Both run every DRILL_TICK_SECONDS and decide only from the database,
so a drill posted by `drillbot post` in another process, or one whose deadline passed while the bot was
down, is handled just the same. One scheduler per process; each job never overlaps itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from bot.digest import send_digest
from bot.drills import DrillService

__all__ = ["build_scheduler"]

log = logging.getLogger(__name__)
REPEAT_LOG_SECONDS = 300


class _QuietRepeats:
    """Runs a job, logging a failure with its traceback once, then at most every few minutes."""

    def __init__(self, name: str, job: Callable[[], Any]) -> None:
        self.name, self.job = name, job
        self.last: tuple[str, float] | None = None

    def __call__(self) -> None:
        try:
            self.job()
            self.last = None
        except Exception as exc:
            key = f"{exc.__class__.__name__}: {exc}"
            now = time.monotonic()
            if self.last is None or self.last[0] != key or now - self.last[1] > REPEAT_LOG_SECONDS:
                log.error("job %s failed: %s", self.name, key, exc_info=True)
                self.last = (key, now)


def build_scheduler(service: DrillService, *, tick_seconds: float) -> BackgroundScheduler:
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
        ("digest", lambda: send_digest(service)),
    )
    for name, job in jobs:
        scheduler.add_job(
            _QuietRepeats(name, job), "interval", seconds=tick_seconds, id=name, name=name, next_run_time=start
        )
    return scheduler
