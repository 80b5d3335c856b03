"""Assembling a running bot: settings -> bank, database, Slack client, service, Bolt app, server, scheduler.

`Bot.start()` / `Bot.stop()` is what `drillbot run` does between signals, and what the end-to-end tests
drive in-process (port 0, a fake Slack): one code path for both.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from slack_sdk import WebClient

from bot.app import build_app
from bot.domain.answers import concerns_answers, is_person_reply
from bot.domain.questions import QuestionBank, load_bank
from bot.drills import DrillService, utcnow
from bot.grader import build_grader
from bot.intake import AnswerIntake
from bot.listeners.commands import COMMAND, hand_off
from bot.metrics import Metrics
from bot.scheduler import build_scheduler
from bot.settings import Settings
from bot.slack_api import SlackGateway, make_client
from bot.web import HttpServer, SlackEdge, build_server
from storage.db import Database

__all__ = ["Bot", "Runtime", "build_runtime"]

log = logging.getLogger(__name__)
LISTENER_THREADS = 16


class _ContextExecutor(ThreadPoolExecutor):
    """Runs each task in a copy of the submitter's context: a lazy listener's log lines keep the request's
    `slack_event_id` (see `bot.logs.bind`)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)


@dataclass
class Runtime:
    settings: Settings
    bank: QuestionBank
    db: Database
    client: WebClient
    service: DrillService
    # This runtime's Prometheus metrics (its own registry); None: nothing is measured.
    metrics: Metrics | None = None
    # auth.test's answer (team, team_id, user, user_id, ...) when the token was verified at build time.
    identity: dict[str, Any] | None = None


def build_runtime(
    settings: Settings,
    *,
    verify_token: bool = False,
    load_questions: bool = True,
    clock: Callable[[], datetime] = utcnow,
    metrics: bool = True,
) -> Runtime:
    bank = load_bank(settings.questions_file) if load_questions else QuestionBank(questions=())
    db = Database(settings.database_url)  # an engine only: nothing is opened or created yet
    measured = Metrics(db=db, clock=clock) if metrics else None
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = make_client(token=token, base_url=settings.slack_api_url, metrics=measured)
    gateway = SlackGateway(client, metrics=measured)
    # The token first: a wrong token or no network is the real problem, and must not hide behind (or
    # leave behind) a freshly migrated database.
    identity = gateway.verify_auth() if verify_token else None
    db.upgrade(bank=bank if load_questions else None)
    service = DrillService(
        settings=settings, bank=bank, db=db, slack=gateway, clock=clock, metrics=measured,
        grader=build_grader(settings),
    )
    return Runtime(settings, bank, db, client, service, measured, identity)


@dataclass
class Bot:
    """The HTTP or Socket Mode front end plus the scheduler, over one Runtime."""

    runtime: Runtime
    mode: str = "http"
    host: str = "0.0.0.0"
    port: int = 3000
    server: HttpServer | None = None
    scheduler: BackgroundScheduler | None = None
    _stoppers: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        settings, service = self.runtime.settings, self.runtime.service
        self.executor = _ContextExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener")
        app = build_app(
            settings,
            service,
            client=self.runtime.client,
            socket_mode=self.mode == "socket",
            listener_executor=self.executor,
        )
        metrics = self.runtime.metrics
        self.scheduler = build_scheduler(service, tick_seconds=settings.drill_tick_seconds, metrics=metrics)
        # The scheduler first: once the port answers, /healthz must already say it runs.
        self.scheduler.start()
        edge = None
        if self.mode == "http":
            assert settings.slack_signing_secret is not None
            secret = settings.slack_signing_secret.get_secret_value()
            edge = SlackEdge(app, signing_secret=secret, health=self.health, ready=self.readiness, metrics=metrics,
                             slow_seconds=settings.drill_slow_request_ms / 1000, messages=concerns_answers,
                             answers=self._answer_intake(), commands=self._command_hand_offs())
        # The Slack port (HTTP mode) and the metrics port (METRICS_PORT), on one uvicorn event loop.
        self.server = build_server(edge, host=self.host, port=self.port, metrics=metrics,
                                   metrics_host=settings.metrics_host, metrics_port=settings.metrics_port)
        if self.server is not None:
            self.server.start()
            self._stoppers.append(self.server.stop)
            if edge is not None:
                log.info("serving HTTP on %s:%d (POST /slack/events, GET /healthz, /readyz)", self.host,
                         self.server.port)
            if "metrics" in self.server.ports:
                log.info("serving metrics on %s:%d (GET /metrics)", settings.metrics_host, self.server.ports["metrics"])
        if self.mode != "http":
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            assert settings.slack_app_token is not None
            handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
            handler.connect()  # type: ignore[no-untyped-call]
            self._stoppers.append(handler.close)
            log.info("connected through Socket Mode")

    def _answer_intake(self) -> AnswerIntake | None:
        """People's thread replies stored in groups, straight from the HTTP edge (`bot.intake`). It needs this
        bot's own user id (a reply the bot wrote is not an answer): without a verified token, Bolt's listener
        takes every reply, as over Socket Mode."""
        identity = self.runtime.identity or {}
        bot_user_id = identity.get("user_id")
        if not isinstance(bot_user_id, str) or not bot_user_id:
            return None
        service = self.runtime.service
        return AnswerIntake(
            functools.partial(service.record_replies, bot_user_id=bot_user_id),
            wants=functools.partial(is_person_reply, bot_user_id=bot_user_id),
        )

    def _command_hand_offs(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        """The slash commands the HTTP edge acknowledges itself, each answer queued on the listener executor
        (the same hand-off as the Bolt listener's, which Socket Mode uses)."""
        client = self.runtime.client
        return {COMMAND: hand_off(self.runtime.service, self.executor, proxy=client.proxy, ssl=client.ssl)}

    def health(self) -> tuple[bool, dict[str, Any]]:
        db_ok = self.runtime.db.ping()
        running = self.scheduler is not None and self.scheduler.running
        body = {
            "status": "ok" if db_ok else "degraded",
            "database": "ok" if db_ok else "unreachable",
            "scheduler": "running" if running else "stopped",
        }
        return db_ok, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready for traffic: the scheduler runs and the database answers (`GET /readyz`)."""
        running = self.scheduler is not None and self.scheduler.running
        db_ok = self.runtime.db.ping()
        body: dict[str, Any] = {
            "ready": running and db_ok,
            "scheduler": "running" if running else "stopped",
            "database": "ok" if db_ok else "unreachable",
        }
        if not body["ready"]:
            reasons = [] if running else ["the scheduler is not running"]
            reasons += [] if db_ok else ["the database does not answer"]
            body["reason"] = "; ".join(reasons)
        return bool(body["ready"]), body

    def stop(self, *, deadline_seconds: float = 9.0) -> bool:
        """Stop accepting, finish in-flight requests and jobs; returns False if work was still running."""
        deadline = time.monotonic() + deadline_seconds
        for stopper in self._stoppers:
            stopper()
        scheduler = self.scheduler

        def drain() -> None:
            if scheduler is not None and scheduler.running:
                scheduler.shutdown(wait=True)
            self.executor.shutdown(wait=True)

        drainer = threading.Thread(target=drain, name="drain", daemon=True)
        drainer.start()
        drainer.join(timeout=max(0.0, deadline - time.monotonic()))
        finished = not drainer.is_alive()
        if not finished:
            log.warning("jobs or listeners still running at the stop deadline")
        self.runtime.service.close()
        self.runtime.db.dispose()
        return finished
