"""Model-based test of the drill loop: random sequences of time, ticks, CLI runs, answers, Slack faults
and crashes, with the lifecycle's promises checked after every step.

The loop runs against the recording Slack stub (`tests/fakes/recording_slack.py`) and a real SQLite (and,
when reachable, PostgreSQL) database. A crash drops every in-memory service and builds new ones, with a
new owner, on the same database; a `Crash` raised inside a Slack call stands for the process dying there.

Invariants, after every step:
- at most one drill message per channel and local day, and at most one per drill;
- at most one reveal per drill, each sealed-answer part at most once;
- the deadline a drill message carries is the deadline the database enforces;
- every answer acknowledged is stored exactly once, a withdrawn one does not count, and the
  leaderboard equals a replay of the transcript by the streak rule.
And once faults stop and time passes every deadline: exactly one reveal per posted drill, with its
sealed answers once.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bot.domain.claims import LEASE
from bot.domain.lifecycle import POSTED, DrillState
from bot.domain.questions import load_bank
from bot.domain.streaks import DrillRef, compute_streaks, rank
from bot.drills import DrillService
from bot.drills.port import DRILL_EVENT, REVEAL_EVENT, SEALED_EVENT
from bot.errors import RetryLater
from bot.settings import Settings
from storage import repo
from storage.db import Database
from storage.models import Answer, Drill
from tests.fakes.recording_slack import REFUSALS, UNCERTAIN, Crash, RecordingSlack
from tests.fakes.workspace import CHANNEL, TEST_BANK

START = datetime(2026, 1, 5, 9, 58, tzinfo=UTC)  # a Monday, just before the 10:00 drill
USERS = ("UANNA", "UBEN", "UCARA")
FAULTS = (*REFUSALS, *UNCERTAIN, "crash", "crash_after_store")
_TEMPLATE: dict[str, Path] = {}


def _template() -> Path:
    """One migrated SQLite file per session, copied for every example (migrations take most of a second)."""
    if "sqlite" not in _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="drillbot-model-")) / "template.db"
        db = Database(f"sqlite:///{path}")
        db.upgrade()
        db.dispose()
        _TEMPLATE["sqlite"] = path
    return _TEMPLATE["sqlite"]


class DrillLoopMachine(RuleBasedStateMachine):
    database_url: str = ""  # set per backend below

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.slack = RecordingSlack()
        self.sealed = False
        self.acked: dict[str, tuple[str, str, datetime]] = {}  # message ts -> (user, thread, written)
        self.withdrawn: dict[str, datetime] = {}  # message ts -> deleted at
        self._issued: set[str] = set()  # every reply ts handed out, acknowledged or not
        self.sealed_acked: dict[tuple[int, str], datetime] = {}
        self.service: DrillService | None = None
        self.dbs: list[Database] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="drillbot-model-"))

    # -- set-up and crashes ----------------------------------------------------------------------

    def _url(self) -> str:
        if self.database_url:
            return self.database_url
        path = self.tmp / "drills.db"
        if not path.exists():
            shutil.copy(_template(), path)
        return f"sqlite:///{path}"

    def _build(self) -> DrillService:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            slack_bot_token="xoxb-model",
            drill_channel=CHANNEL,
            database_url=self._url(),
            questions_file=str(TEST_BANK),
            drill_schedule="0 10 * * 1-5",
            drill_answer_window="1h",
            drill_sealed=self.sealed,
        )
        db = Database(settings.database_url, pool_size=2)
        db.upgrade()
        self.dbs.append(db)
        return DrillService(
            settings=settings, bank=load_bank(str(TEST_BANK)), db=db, slack=self.slack, clock=lambda: self.now
        )

    @initialize(sealed=st.booleans())
    def start(self, sealed: bool) -> None:
        self.sealed = sealed
        self.service = self._build()

    def _run(self, step: Any) -> Any:
        """Run one step of the service; a Crash kills the process (a new one is built on the same database)."""
        try:
            return step()
        except Crash:
            self.crash()
            return None

    @rule()
    def crash(self) -> None:
        for db in self.dbs:
            db.dispose()
        self.dbs.clear()
        self.service = self._build()

    # -- time, the scheduler and the operator -----------------------------------------------------

    @rule(minutes=st.sampled_from([1, 2, 5, 20, 45, 61, 24 * 60 - 60]))
    def advance(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule()
    def lease_passes(self) -> None:
        self.now += LEASE + timedelta(seconds=1)

    @rule()
    def tick(self) -> None:
        # Each job on the current service: after a crash in one, the dead process's services never run again.
        self._run(lambda: self._service().post_if_due())
        self._run(lambda: self._service().reveal_due())
        self._run(lambda: self._service().refresh_live_counts())

    def _service(self) -> DrillService:
        assert self.service is not None
        return self.service

    @rule()
    def cli_post(self) -> None:
        assert self.service is not None
        service = self.service
        self._run(lambda: service.post_today(CHANNEL, retry_failed=True))

    @rule()
    def cli_reveal(self) -> None:
        assert self.service is not None
        service = self.service
        self._run(lambda: service.reveal_due(retry_failed=True))

    # -- Slack faults -------------------------------------------------------------------------------

    @rule(method=st.sampled_from(["post", "update", "find_marked"]), kind=st.sampled_from(FAULTS))
    def fault(self, method: str, kind: str) -> None:
        self.slack.fail_next(method, kind)

    @rule()
    def archive(self) -> None:
        self.slack.archived.add(CHANNEL)

    @rule()
    def recover(self) -> None:
        self.slack.clear_faults()

    # -- people -------------------------------------------------------------------------------------

    def _threads(self) -> list[str]:
        return [s.ts for s in self.slack.marked(DRILL_EVENT)]

    @precondition(lambda self: bool(self._threads()))
    @rule(user=st.sampled_from(USERS), which=st.integers(0, 3))
    def answer(self, user: str, which: int) -> None:
        event = self._reply(user, which)
        if self._deliver(event):
            self.acked[event["ts"]] = (user, event["thread_ts"], datetime.fromtimestamp(float(event["ts"]), UTC))

    @precondition(lambda self: bool(self._threads()))
    @rule(
        users=st.lists(st.sampled_from(USERS), min_size=2, max_size=4),
        which=st.integers(0, 3),
        redelivered=st.integers(0, 1000),
    )
    def answers_in_one_group(self, users: list[str], which: int, redelivered: int) -> None:
        """Replies stored together in one transaction, as the HTTP edge's answer intake does, one of them
        possibly a redelivery of an earlier acknowledged reply."""
        events = []
        for user in users:
            event = self._reply(user, which)
            events.append(event)
        if self.acked:
            ts = sorted(self.acked)[redelivered % len(self.acked)]
            user, thread, _ = self.acked[ts]
            events.insert(redelivered % (len(events) + 1),
                          {"type": "message", "channel": CHANNEL, "user": user, "text": "again", "thread_ts": thread,
                           "ts": ts})
        assert self.service is not None
        outcomes = self.service.record_replies(events, "UBOT")
        for event, outcome in zip(events, outcomes, strict=True):
            if not isinstance(outcome, RetryLater) and event["ts"] not in self.acked:
                self.acked[event["ts"]] = (
                    event["user"], event["thread_ts"], datetime.fromtimestamp(float(event["ts"]), UTC)
                )

    def _reply(self, user: str, which: int) -> dict[str, Any]:
        threads = self._threads()
        thread = threads[-1 - which % len(threads)]
        ts = f"{self.now.timestamp():.6f}"
        taken = set(self.acked) | set(self._issued)
        while ts in taken:
            ts = f"{float(ts) + 0.000001:.6f}"
        self._issued.add(ts)
        return {"type": "message", "channel": CHANNEL, "user": user, "text": "my answer", "thread_ts": thread, "ts": ts}

    def _deliver(self, event: dict[str, Any]) -> bool:
        """True when the bot acknowledged the event (Slack would not redeliver it)."""
        assert self.service is not None
        try:
            self.service.handle_message_event(event, "UBOT")
        except RetryLater:
            return False
        return True

    @precondition(lambda self: bool(self.acked))
    @rule(pick=st.integers(0, 1000))
    def redeliver(self, pick: int) -> None:
        ts = sorted(self.acked)[pick % len(self.acked)]
        user, thread, _ = self.acked[ts]
        event = {"type": "message", "channel": CHANNEL, "user": user, "text": "again", "thread_ts": thread, "ts": ts}
        assert self._deliver(event)

    @precondition(lambda self: bool(self.acked))
    @rule(pick=st.integers(0, 1000))
    def edit(self, pick: int) -> None:
        ts = sorted(self.acked)[pick % len(self.acked)]
        user, thread, _ = self.acked[ts]
        message = {"type": "message", "user": user, "text": "edited", "thread_ts": thread, "ts": ts}
        event = {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "message": message,
                 "event_ts": f"{self.now.timestamp():.6f}"}
        assert self._deliver(event)

    @precondition(lambda self: bool(self.acked))
    @rule(pick=st.integers(0, 1000))
    def delete(self, pick: int) -> None:
        ts = sorted(self.acked)[pick % len(self.acked)]
        event = {"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "deleted_ts": ts,
                 "event_ts": f"{self.now.timestamp():.6f}"}
        if self._deliver(event) and ts not in self.withdrawn:
            self.withdrawn[ts] = self.now

    @precondition(lambda self: self.sealed and bool(self._threads()))
    @rule(user=st.sampled_from(USERS))
    def sealed_answer(self, user: str) -> None:
        assert self.service is not None
        drill_id = self.slack.marked(DRILL_EVENT)[-1].payload["drill_id"]
        if self.service.submit_sealed_answer(drill_id, user, f"sealed by {user}") == "stored":
            self.sealed_acked.setdefault((drill_id, user), self.now)

    # -- invariants ---------------------------------------------------------------------------------

    def _drills(self) -> list[Drill]:
        assert self.service is not None
        with self.service.db.transaction() as session:
            return list(session.query(Drill).order_by(Drill.id))

    @invariant()
    def one_drill_message_per_day_and_drill(self) -> None:
        if self.service is None:
            return
        by_drill = Counter(s.payload["drill_id"] for s in self.slack.marked(DRILL_EVENT))
        assert all(n == 1 for n in by_drill.values()), f"a drill was posted twice: {by_drill}"
        days = {d.id: d.day for d in self._drills()}
        by_day = Counter(days[i] for i in by_drill)
        assert all(n == 1 for n in by_day.values()), f"two drills on one day: {by_day}"

    @invariant()
    def at_most_one_reveal_and_sealed_part(self) -> None:
        reveals = Counter(s.payload["drill_id"] for s in self.slack.marked(REVEAL_EVENT))
        assert all(n == 1 for n in reveals.values()), f"a reveal was posted twice: {reveals}"
        parts = Counter((s.payload["drill_id"], s.payload["part"]) for s in self.slack.marked(SEALED_EVENT))
        assert all(n == 1 for n in parts.values()), f"sealed answers were posted twice: {parts}"
        for drill_id in {d for d, _ in parts}:
            assert reveals[drill_id] == 1, "sealed answers before (or without) the guidance"

    @invariant()
    def the_deadline_shown_is_the_deadline_enforced(self) -> None:
        if self.service is None:
            return
        shown = {s.payload["drill_id"]: s.payload["deadline"] for s in self.slack.marked(DRILL_EVENT)}
        for drill in self._drills():
            if drill.status in POSTED:
                assert drill.ts is not None
                posted = next(s for s in self.slack.marked(DRILL_EVENT) if s.ts == drill.ts)
                assert posted.payload["drill_id"] == drill.id
                assert shown[drill.id] == int(drill.deadline.timestamp()), "message and database disagree"

    def _expected_answers(self) -> dict[int, set[str]]:
        """Who counts, by drill, replayed from what was acknowledged, when, and what was withdrawn."""
        by_thread = {s.ts: (s.payload["drill_id"], s.payload["deadline"]) for s in self.slack.marked(DRILL_EVENT)}
        expected: dict[int, set[str]] = {}
        for ts, (user, thread, written) in self.acked.items():
            drill_id, deadline = by_thread[thread]
            if written.timestamp() >= deadline:
                continue
            deleted = self.withdrawn.get(ts)
            if deleted is not None and deleted.timestamp() < deadline:
                continue
            expected.setdefault(drill_id, set()).add(user)
        for (drill_id, user), _at in self.sealed_acked.items():
            expected.setdefault(drill_id, set()).add(user)
        return expected

    @invariant()
    def answers_counted_once_and_leaderboard_is_a_replay(self) -> None:
        if self.service is None:
            return
        expected = self._expected_answers()
        with self.service.db.transaction() as session:
            rows = session.query(Answer.drill_id, Answer.user_id, Answer.message_ts, Answer.deleted).all()
        stored = Counter(ts for _, _, ts, _ in rows)
        assert all(n == 1 for n in stored.values())
        counted: dict[int, set[str]] = {}
        for drill_id, user, _ts, deleted in rows:
            if not deleted:
                counted.setdefault(drill_id, set()).add(user)
        assert counted == expected
        drills = [d for d in self._drills() if d.ts is not None]
        refs = [DrillRef(d.id, d.status in POSTED and self.now < d.deadline, d.day) for d in drills]
        answered: dict[str, set[int]] = {}
        for drill_id, users in expected.items():
            for user in users:
                answered.setdefault(user, set()).add(drill_id)
        replay = rank(compute_streaks(refs, answered).values())
        board = self._run(lambda: self.service.leaderboard(CHANNEL)) if self.service else None
        if board is not None:
            assert board == replay

    def teardown(self) -> None:
        try:
            if self.service is not None:
                self._settle()
        finally:
            for db in self.dbs:
                db.dispose()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _settle(self) -> None:
        """Faults stop and time passes every deadline: every posted drill gets exactly one reveal."""
        self.slack.clear_faults()
        self.now += LEASE + timedelta(hours=2)
        for _ in range(8):
            self.now += timedelta(minutes=6)  # past the longest retry delay
            assert self.service is not None
            self.service.reveal_due()
        self.one_drill_message_per_day_and_drill()
        self.at_most_one_reveal_and_sealed_part()
        reveals = Counter(s.payload["drill_id"] for s in self.slack.marked(REVEAL_EVENT))
        for drill in self._drills():
            if drill.ts is None:
                assert drill.status in (DrillState.POST_FAILED, DrillState.POSTING)
                continue
            assert drill.status == DrillState.CLOSED, f"drill {drill.id} stuck in {drill.status}"
            assert reveals[drill.id] == 1, f"drill {drill.id} revealed {reveals[drill.id]} times"
            if drill.sealed:
                with self.service.db.transaction() as session:
                    answers = repo.modal_answers(session, drill.id)
                parts = [s for s in self.slack.marked(SEALED_EVENT, drill.id)]
                assert bool(parts) == bool(answers), f"drill {drill.id}: sealed answers not posted"
        self.answers_counted_once_and_leaderboard_is_a_replay()


MODEL_SETTINGS = settings(
    max_examples=60,
    derandomize=True,  # CI runs the same examples every time; the PostgreSQL run and local runs explore
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_drill_loop_model_sqlite() -> None:
    DrillLoopMachine.database_url = ""
    DrillLoopMachine.TestCase.settings = MODEL_SETTINGS
    DrillLoopMachine.TestCase().runTest()


@pytest.mark.postgres
def test_drill_loop_model_postgresql(postgres_databases) -> None:  # type: ignore[no-untyped-def]
    """The same model on PostgreSQL (skipped, saying why, when no server is reachable): a fresh migrated
    database for every example."""

    class OnPostgres(DrillLoopMachine):
        def _url(self) -> str:
            if not hasattr(self, "_pg"):
                self._pg = postgres_databases()
            return self._pg

    OnPostgres.TestCase.settings = settings(MODEL_SETTINGS, max_examples=15)
    OnPostgres.TestCase().runTest()
