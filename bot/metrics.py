"""Prometheus metrics: one `Metrics` object per running bot, served as text at `GET /metrics`.

Each `Metrics` has its own `CollectorRegistry` (never the global default one), so several bots in one
process (the tests, an embedding app) do not mix their numbers. Everything that records takes a
`Metrics | None`: None means "no metrics" and costs nothing.

Two kinds of numbers:

- counters and histograms this process records as things happen (requests, ack latency, Slack API calls
  and retries, scheduler job runs and lag, drills posted / reveals / answers);
- gauges read from the database at scrape time (`DatabaseCollector`): when each channel's last drill was
  posted, how overdue its oldest unrevealed drill is, drills per status. They are the same on every
  replica and survive restarts, which is what alerts such as "no drill posted by 10:30" need (a
  per-process counter would be on whichever replica happened to post).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from bot.domain.lifecycle import DrillState
from storage.db import Database
from storage.models import Drill

# Drills whose guidance is still owed (posted, not revealed yet).
OWED = (DrillState.OPEN, DrillState.REVEALING, DrillState.REVEAL_FAILED)

__all__ = ["CONTENT_TYPE", "DatabaseCollector", "Metrics", "REQUEST_TYPES", "request_type"]

log = logging.getLogger(__name__)

# The classic text format (what generate_latest writes); every Prometheus version reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TYPES = ("event", "command", "action", "view", "other")
# Slack wants an ack within 3 s; the interesting range is 1 ms .. 3 s.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)
JOB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_EVENT_TYPES = frozenset({"event_callback", "url_verification", "app_rate_limited"})
_ACTION_TYPES = frozenset(
    {"block_actions", "interactive_message", "block_suggestion", "shortcut", "message_action", "dialog_submission"}
)
_VIEW_TYPES = frozenset({"view_submission", "view_closed"})


def request_type(body: object) -> str:
    """event / command / action / view / other, from a parsed Slack request body."""
    if not isinstance(body, dict):
        return "other"
    if body.get("command"):
        return "command"
    kind = body.get("type")
    if not isinstance(kind, str):  # a list or an object cannot be looked up in a set
        kind = None
    if kind in _EVENT_TYPES or isinstance(body.get("event"), dict):
        return "event"
    if kind in _ACTION_TYPES:
        return "action"
    if kind in _VIEW_TYPES:
        return "view"
    return "other"


def slack_outcome(exc: BaseException | None) -> str:
    """The `outcome` label of a Slack API call: ok, error:<code>, http:<status> or exception:<Name>."""
    if exc is None:
        return "ok"
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        if status != 200:
            return f"http:{status}"
        getter = getattr(response, "get", None)
        error = getter("error") if callable(getter) else None
        return f"error:{error or 'unknown'}"
    return f"exception:{exc.__class__.__name__}"


class Metrics:
    """The bot's metrics, in a registry of its own. Methods are thread-safe and never raise."""

    def __init__(self, *, db: Database | None = None, clock: Callable[[], datetime] | None = None,
                 process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Labelled children of the per-event metrics, looked up once (a dict read) rather than per event.
        self._request_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._answer_children: dict[str, Counter] = {}
        self.requests = Counter(
            "drillbot_requests", "HTTP requests to /slack/events by Slack request type and HTTP status",
            ["type", "status"], registry=r,
        )
        self.ack_latency = Histogram(
            "drillbot_ack_latency_seconds", "Time to produce the HTTP response to Slack, by request type",
            ["type"], buckets=ACK_BUCKETS, registry=r,
        )
        self.drills_posted = Counter(
            "drillbot_drills_posted", "Drills this process posted to Slack", ["channel"], registry=r
        )
        self.reveals_posted = Counter(
            "drillbot_reveals_posted", "Reveals (guidance) this process posted to Slack", ["channel"], registry=r
        )
        self.reveal_lateness = Histogram(
            "drillbot_reveal_lateness_seconds", "How long after the deadline a reveal was posted",
            ["channel"], buckets=LAG_BUCKETS, registry=r,
        )
        self.answers_recorded = Counter(
            "drillbot_answers_recorded", "Answers recorded (thread replies and sealed answers)", ["channel"],
            registry=r,
        )
        self.claims_lost = Counter(
            "drillbot_claims_lost",
            "Lifecycle steps this process started but found taken over by another when it wrote the result",
            ["step"], registry=r,
        )
        self.slack_calls = Counter(
            "drillbot_slack_api_calls",
            "Slack Web API calls made by the drill loop, by method and final outcome (after retries): "
            "ok, error:<code>, http:<status>, exception:<Name>",
            ["method", "outcome"], registry=r,
        )
        self.slack_retries = Counter(
            "drillbot_slack_api_retries", "Slack Web API retries by method and reason (rate_limited, connection)",
            ["method", "reason"], registry=r,
        )
        # Scheduler jobs are labelled `task`: Prometheus gives every series a `job` label of its own (the
        # scrape job), and a metric label of that name would be renamed to `exported_job`.
        self.job_runs = Counter(
            "drillbot_scheduler_runs", "Scheduler job runs by task and outcome (ok, error, skipped)",
            ["task", "outcome"], registry=r,
        )
        self.job_duration = Histogram(
            "drillbot_scheduler_duration_seconds", "Scheduler job run time", ["task"], buckets=JOB_BUCKETS,
            registry=r,
        )
        self.job_lag = Histogram(
            "drillbot_scheduler_lag_seconds", "How late a scheduler job run started after its scheduled time",
            ["task"], buckets=LAG_BUCKETS, registry=r,
        )
        self.job_last_lag = Gauge(
            "drillbot_scheduler_last_lag_seconds", "Lag of the latest run of each scheduler job", ["task"],
            registry=r,
        )
        self.job_last_success = Gauge(
            "drillbot_scheduler_last_success_timestamp_seconds",
            "When each scheduler job last finished without error (Unix time)", ["task"], registry=r,
        )
        if process:
            ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        if db is not None:
            r.register(DatabaseCollector(db, clock=clock))

    # One sink per bot: a copy (Bolt deep-copies each request's context, retry handlers included, for
    # lazy listeners) must record into the same registry, and locks cannot be copied anyway.
    def __copy__(self) -> Metrics:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Metrics:
        return self

    # -- the drill loop (called by bot.drills) ---------------------------------------------------

    def drill_posted(self, channel: str) -> None:
        self.drills_posted.labels(channel=channel).inc()

    def reveal_posted(self, channel: str, lateness_seconds: float | None = None) -> None:
        self.reveals_posted.labels(channel=channel).inc()
        if lateness_seconds is not None:
            self.reveal_lateness.labels(channel=channel).observe(max(0.0, lateness_seconds))

    def answer_recorded(self, channel: str) -> None:
        counter = self._answer_children.get(channel)
        if counter is None:  # labels() costs as much as the increment several times over: once per channel
            counter = self._answer_children[channel] = self.answers_recorded.labels(channel=channel)
        counter.inc()

    def claim_lost(self, step: str) -> None:
        self.claims_lost.labels(step=step).inc()

    # -- the HTTP edge, Slack API, scheduler -----------------------------------------------------

    def request(self, kind: str, status: int, seconds: float | None = None) -> None:
        children = self._request_children.get((kind, status))
        if children is None:  # once per request type and status, not once per request
            children = self._request_children[(kind, status)] = (
                self.requests.labels(type=kind, status=str(status)), self.ack_latency.labels(type=kind)
            )
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def slack_call(self, method: str, outcome: str) -> None:
        self.slack_calls.labels(method=method, outcome=outcome).inc()

    def slack_retry(self, method: str, reason: str) -> None:
        self.slack_retries.labels(method=method, reason=reason).inc()

    def job_run(
        self, job: str, outcome: str, seconds: float | None = None, *, finished_at: float | None = None
    ) -> None:
        self.job_runs.labels(task=job, outcome=outcome).inc()
        if seconds is not None:
            self.job_duration.labels(task=job).observe(seconds)
        if outcome == "ok" and finished_at is not None:
            self.job_last_success.labels(task=job).set(finished_at)

    def job_started_late(self, job: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.job_lag.labels(task=job).observe(seconds)
        self.job_last_lag.labels(task=job).set(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape; a scrape never fails because the database did."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("drillbot_database_up", "1 if the last scrape could read the database"),
            GaugeMetricFamily(
                "drillbot_last_drill_posted_timestamp_seconds",
                "When the latest drill of each channel was posted (Unix time; from the database)",
                labels=["channel"],
            ),
            GaugeMetricFamily(
                "drillbot_reveal_overdue_seconds",
                "How long past its deadline the oldest unrevealed drill of each channel is (0: none overdue)",
                labels=["channel"],
            ),
            GaugeMetricFamily("drillbot_drills", "Drills in the database by status", labels=["status"]),
        )

    def collect(self) -> Iterator[Metric]:
        up, posted, overdue, by_status = self._families()
        now = self.clock()
        try:
            with self.db.read() as session:  # a scrape never takes the write lock
                last_posted = session.execute(
                    select(Drill.channel, func.max(Drill.posted_at))
                    .where(Drill.posted_at.is_not(None))
                    .group_by(Drill.channel)
                ).all()
                unrevealed = session.execute(
                    select(Drill.channel, func.min(Drill.deadline))
                    .where(Drill.status.in_(list(OWED)))
                    .group_by(Drill.channel)
                ).all()
                statuses = session.execute(select(Drill.status, func.count()).group_by(Drill.status)).all()
        except Exception as exc:  # a scrape must not fail: say the database is down instead
            log.debug("metrics: cannot read the database (%s)", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for channel, at in last_posted:
            if at is None:
                continue
            posted.add_metric([channel], _aware(at).timestamp())
        for channel, deadline in unrevealed:
            if deadline is None:
                continue
            overdue.add_metric([channel], max(0.0, (now - _aware(deadline)).total_seconds()))
        counts = {str(status): int(n) for status, n in statuses}
        for status in DrillState:
            by_status.add_metric([status.value], counts.get(status.value, 0))
        yield from (up, posted, overdue, by_status)


def _aware(value: datetime | str) -> datetime:
    # Aggregates (max/min) bypass the column's type on some backends: a naive value is UTC.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
