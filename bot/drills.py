"""The drill loop: post the day's drill, record answers, reveal the guidance, compute streaks.

This is where the domain rules meet storage and Slack. Every step follows the same pattern so that
restarts, the CLI and other replicas agree: decide from the database, claim the step with a conditional
write, call Slack outside any transaction, then record the result. A step that failed in an uncertain way
(timeout, 5xx, a crash) is retried after a growing delay, and the retry first looks in Slack for the
message the earlier attempt may have posted (message metadata carries the drill id), so nothing is
posted twice and nothing is lost.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from bot import blocks
from bot.domain.answers import is_person_reply
from bot.domain.claims import Owner, can_take_over
from bot.domain.practice import RATINGS
from bot.domain.programs import Program, load_programs, single_program
from bot.domain.questions import Question, QuestionBank
from bot.domain.rotation import next_question
from bot.domain.streaks import DrillRef, Streak, compute_streaks, rank
from bot.errors import ConfigError, QuestionBankError, RetryLater, SlackSetupError
from bot.logs import bind
from bot.metrics import Metrics
from bot.settings import Settings
from bot.slack_api import DRILL_EVENT, REVEAL_EVENT, SlackGateway
from storage import repo
from storage.db import Database
from storage.models import Drill, DrillStatus

__all__ = ["DrillService", "PostOutcome", "PostResult", "utcnow"]

log = logging.getLogger(__name__)

# Owners alive in this process: several services may share one process (tests, an embedding app), and
# each must trust the others' claims like a live replica's.
_LIVE_NONCES: set[str] = set()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def slack_ts_to_datetime(ts: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def describe_failure(exc: BaseException) -> str:
    """One line for an exception from a Slack call: the Slack error code, or the transport failure."""
    response = getattr(exc, "response", None)
    if response is not None and hasattr(response, "status_code"):
        error = response.get("error") if hasattr(response, "get") else None
        return f"HTTP {response.status_code}" + (f", {error}" if error else "")
    cause = getattr(exc, "reason", None) or exc.__cause__
    name = exc.__class__.__name__ + (f" ({cause.__class__.__name__})" if isinstance(cause, BaseException) else "")
    return f"{name}: cannot reach Slack at SLACK_API_URL" if isinstance(exc, OSError) else name


def _clean(text: Any) -> str:
    # PostgreSQL text cannot hold NUL; keep everything else as written.
    return str(text or "").replace("\x00", "\ufffd")


LIVE_COUNT_INTERVAL = timedelta(seconds=5)
FOLD_BACKLOG = 3  # closed drills a leaderboard replays before it folds them into the stored state
_OPEN_STATES = frozenset({DrillStatus.OPEN, DrillStatus.REVEALING})
_FINAL_STATES = frozenset({DrillStatus.CLOSED, DrillStatus.FAILED})


def build_programs(settings: Settings, bank: QuestionBank) -> list[Program]:
    """DRILL_PROGRAMS_FILE's programs, else one from the single-channel settings, else none."""
    if settings.drill_programs_file:
        return load_programs(
            settings.drill_programs_file,
            bank=bank,
            default_schedule=settings.drill_schedule,
            default_timezone=settings.drill_timezone,
            default_window=settings.drill_answer_window,
            skip_dates=settings.drill_skip_dates,
        )
    if settings.drill_channel:
        return [single_program(channel=settings.drill_channel, schedule=settings.schedule)]
    return []


class _FoldConflict(Exception):
    """Another process folded some of these drills first: roll back, nothing to do."""


def _stored_streaks(session: Any, channel: str) -> dict[str, Streak]:
    return {
        user: Streak(user, current, longest, total)
        for user, current, longest, total in repo.streak_states(session, channel)
    }


class PostResult(StrEnum):
    POSTED = "posted"
    ADOPTED = "adopted"  # an earlier attempt had posted it; found through its metadata
    EXISTS = "exists"
    IN_PROGRESS = "in_progress"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True)
class PostOutcome:
    result: PostResult
    drill_id: int | None = None
    question_id: str | None = None
    ts: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class _Snapshot:
    """The fields of a drill a step needs after its transaction has ended."""

    id: int
    channel: str
    day_start: datetime
    question_id: str
    ts: str | None
    deadline: datetime
    status: str
    sealed: bool

    @classmethod
    def of(cls, drill: Drill, tz: Any) -> _Snapshot:
        day_start = datetime.combine(drill.day, time(0), tzinfo=tz).astimezone(UTC)
        return cls(
            drill.id, drill.channel, day_start, drill.question_id, drill.ts, drill.deadline, drill.status, drill.sealed
        )


class DrillService:
    def __init__(
        self,
        *,
        settings: Settings,
        bank: QuestionBank,
        db: Database,
        slack: SlackGateway,
        clock: Callable[[], datetime] = utcnow,
        pid_alive: Callable[[int], bool] = _pid_alive,
        programs: list[Program] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.programs = build_programs(settings, bank) if programs is None else programs
        self._by_channel = {p.channel: p for p in self.programs}
        self.bank = bank
        self.db = db
        self.slack = slack
        self.clock = clock
        self.pid_alive = pid_alive
        self.owner = Owner(socket.gethostname(), os.getpid(), secrets.token_hex(4))
        _LIVE_NONCES.add(self.owner.nonce)

    def close(self) -> None:
        """This service stops claiming work; its unfinished claims may be taken over at once."""
        _LIVE_NONCES.discard(self.owner.nonce)

    # -- programs --------------------------------------------------------------------------------

    def program_for(self, channel: str | None = None) -> Program:
        """The program of `channel`, or the only program when no channel is named."""
        if channel is not None:
            if channel in self._by_channel:
                return self._by_channel[channel]
            # A channel with drills but no program (any more): the single-channel settings apply.
            return single_program(channel=channel, schedule=self.settings.schedule)
        if len(self.programs) == 1:
            return self.programs[0]
        if not self.programs:
            self.settings.require("drill_channel")
        channels = ", ".join(f"{p.channel} ({p.name})" for p in self.programs)
        raise ConfigError(f"several drill programs: name one with --channel ({channels})")

    def _tz(self, channel: str) -> Any:
        return self.program_for(channel).schedule.tz

    def is_manager(self, user_id: str, channel: str | None = None) -> bool:
        """DRILL_MANAGERS manage every program; a program's own managers manage its channel."""
        if user_id in self.settings.drill_managers:
            return True
        programs = [self._by_channel[channel]] if channel in self._by_channel else self.programs
        return any(user_id in p.managers for p in programs)

    # -- posting ---------------------------------------------------------------------------------

    def post_if_due(self) -> list[PostOutcome]:
        """Scheduler entry: post each program's drill when its schedule says so, or finish a pending post."""
        outcomes = []
        for program in self.programs:
            now = self.clock()
            with self.db.transaction() as session:
                drill = repo.drill_for_day(session, program.channel, program.schedule.local_date(now))
                pending = drill is not None and drill.status == DrillStatus.POSTING
            if (drill is None and program.schedule.is_due(now)) or pending:
                outcomes.append(self.post_today(program.channel))
        return outcomes

    def post_today(self, channel: str | None = None, *, retry_failed: bool = False) -> PostOutcome:
        """Post today's drill unless the channel already has one today (in the program's time zone)."""
        program = self.program_for(channel)
        channel = program.channel
        schedule = program.schedule
        now = self.clock()
        day = schedule.local_date(now)
        with self.db.transaction() as session:
            drill = repo.drill_for_day(session, channel, day)
            if drill is None:
                used = repo.used_question_ids(session, channel)
                question_id = next_question(program.question_ids(self.bank), used, channel=channel, day=day)
                drill = repo.insert_drill(
                    session,
                    channel=channel,
                    day=day,
                    question_id=question_id,
                    deadline=now + schedule.window,
                    owner=str(self.owner),
                    now=now,
                    sealed=self.settings.drill_sealed,
                )
                if drill is None:
                    return PostOutcome(PostResult.IN_PROGRESS, detail="another process is posting today's drill")
                reconcile = False
            elif drill.status == DrillStatus.POSTING and self._can_take_over(drill, now):
                if not repo.claim(session, drill, to_status=DrillStatus.POSTING, owner=str(self.owner), now=now):
                    return PostOutcome(PostResult.IN_PROGRESS, drill.id, drill.question_id)
                reconcile = True
            elif drill.status == DrillStatus.FAILED and retry_failed:
                if not repo.claim(session, drill, to_status=DrillStatus.POSTING, owner=str(self.owner), now=now):
                    return PostOutcome(PostResult.IN_PROGRESS, drill.id, drill.question_id)
                reconcile = False  # Slack refused the earlier attempt outright: nothing was posted
            else:
                return self._existing(drill)
            snapshot = _Snapshot.of(drill, schedule.tz)
        with bind(drill_id=snapshot.id):  # every log line of the step carries the drill id
            return self._deliver_drill(snapshot, reconcile=reconcile)

    def _existing(self, drill: Drill) -> PostOutcome:
        if drill.status == DrillStatus.POSTING:
            return PostOutcome(PostResult.IN_PROGRESS, drill.id, drill.question_id, detail="being posted")
        if drill.status == DrillStatus.FAILED:
            return PostOutcome(PostResult.FAILED, drill.id, drill.question_id, detail=drill.error or "")
        return PostOutcome(PostResult.EXISTS, drill.id, drill.question_id, drill.ts)

    def _deliver_drill(self, drill: _Snapshot, *, reconcile: bool) -> PostOutcome:
        owner = str(self.owner)
        try:
            question = self._question(drill.question_id)
            if reconcile:
                found = self.slack.find_marked(
                    drill.channel, event_type=DRILL_EVENT, drill_id=drill.id, oldest=drill.day_start.timestamp()
                )
                if found:
                    with self.db.transaction() as session:
                        repo.finish_post(
                            session, drill.id, owner=owner, ts=found, now=self.clock(), deadline=drill.deadline
                        )
                    log.info("drill %s: adopted the message an earlier attempt posted (ts %s)", drill.id, found)
                    return PostOutcome(PostResult.ADOPTED, drill.id, drill.question_id, found)
            # A drill posted after a takeover gets a fresh deadline: the full window to answer.
            window = self.program_for(drill.channel).schedule.window
            deadline = self.clock() + window if reconcile else drill.deadline
            ts = self.slack.post(
                drill.channel,
                blocks.drill_message(question, deadline=deadline, sealed=drill.sealed, drill_id=drill.id),
                event_type=DRILL_EVENT,
                drill_id=drill.id,
            )
        except (SlackSetupError, QuestionBankError) as exc:
            log.error("drill %s: not posted: %s", drill.id, exc)
            with self.db.transaction() as session:
                repo.mark_failed(session, drill.id, owner=owner, error=str(exc))
            return PostOutcome(PostResult.FAILED, drill.id, drill.question_id, detail=str(exc))
        except Exception as exc:
            detail = describe_failure(exc)
            log.warning("drill %s: posting not confirmed (%s); will check Slack and retry", drill.id, detail)
            log.debug("drill %s: posting failure", drill.id, exc_info=True)
            with self.db.transaction() as session:
                repo.release(session, drill.id, owner=owner, now=self.clock())
            return PostOutcome(PostResult.RETRYING, drill.id, drill.question_id, detail=detail)
        with self.db.transaction() as session:
            repo.finish_post(session, drill.id, owner=owner, ts=ts, now=self.clock(), deadline=deadline)
        log.info("drill %s: posted question %s to %s (ts %s)", drill.id, drill.question_id, drill.channel, ts)
        if self.metrics:
            self.metrics.drill_posted(drill.channel)
        return PostOutcome(PostResult.POSTED, drill.id, drill.question_id, ts)

    # -- revealing -------------------------------------------------------------------------------

    def reveal_due(self, *, retry_failed: bool = False) -> list[int]:
        """Reveal every open drill whose deadline has passed; returns the ids revealed now."""
        now = self.clock()
        with self.db.transaction() as session:
            candidates = repo.drills_needing_reveal(session, now, include_failed=retry_failed)
        revealed: list[int] = []
        for drill in candidates:
            if drill.status == DrillStatus.REVEALING and not self._can_take_over(drill, now):
                continue
            with self.db.transaction() as session:
                if not repo.claim(session, drill, to_status=DrillStatus.REVEALING, owner=str(self.owner), now=now):
                    continue
                answered = repo.answerer_count(session, drill.id)
            snapshot = _Snapshot.of(drill, self._tz(drill.channel))
            with bind(drill_id=drill.id):
                if self._deliver_reveal(snapshot, answered, reconcile=drill.status == DrillStatus.REVEALING):
                    revealed.append(drill.id)
        return revealed

    def _deliver_reveal(self, drill: _Snapshot, answered: int, *, reconcile: bool) -> bool:
        owner = str(self.owner)
        assert drill.ts is not None  # only posted drills are revealed
        try:
            question = self._question(drill.question_id)
            reveal_ts = None
            if reconcile:
                reveal_ts = self.slack.find_marked(
                    drill.channel,
                    event_type=REVEAL_EVENT,
                    drill_id=drill.id,
                    oldest=float(drill.ts),
                    thread_ts=drill.ts,
                )
            if reveal_ts is None:
                reveal_ts = self.slack.post(
                    drill.channel,
                    blocks.reveal_message(question, answered=answered, drill_id=drill.id),
                    thread_ts=drill.ts,
                    event_type=REVEAL_EVENT,
                    drill_id=drill.id,
                )
                if drill.sealed:
                    self._post_sealed_answers(drill)
        except (SlackSetupError, QuestionBankError) as exc:
            log.error("drill %s: guidance not posted: %s", drill.id, exc)
            with self.db.transaction() as session:
                repo.mark_failed(session, drill.id, owner=owner, error=str(exc))
            return False
        except Exception as exc:
            detail = describe_failure(exc)
            log.warning("drill %s: reveal not confirmed (%s); will check Slack and retry", drill.id, detail)
            log.debug("drill %s: reveal failure", drill.id, exc_info=True)
            with self.db.transaction() as session:
                repo.release(session, drill.id, owner=owner, now=self.clock())
            return False
        try:
            closed = blocks.drill_message(question, deadline=drill.deadline, closed=True, answered=answered)
            self.slack.update(drill.channel, drill.ts, closed)
        except Exception as exc:  # cosmetic: the guidance is out; the closed badge can be missing
            log.warning("drill %s: could not mark the drill message closed (%s)", drill.id, describe_failure(exc))
        with self.db.transaction() as session:
            repo.mark_closed(
                session, drill.id, owner=owner, reveal_ts=reveal_ts, answer_count=answered, now=self.clock()
            )
        log.info("drill %s: revealed (%d answered)", drill.id, answered)
        if self.metrics:
            self.metrics.reveal_posted(drill.channel, (self.clock() - drill.deadline).total_seconds())
        try:
            self.fold_streaks(drill.channel)
        except Exception:  # the leaderboard replays unfolded drills, so this only costs speed
            log.warning("drill %s: could not update the stored streaks", drill.id, exc_info=True)
        return True

    def _post_sealed_answers(self, drill: _Snapshot) -> None:
        """The sealed answers, right after the guidance (attributed by user ID, their text escaped)."""
        with self.db.transaction() as session:
            answers = repo.modal_answers(session, drill.id)
        for message in blocks.sealed_answers_messages(answers):
            try:
                self.slack.post(drill.channel, message, thread_ts=drill.ts)
            except Exception as exc:  # the guidance is out; say so rather than retry into duplicates
                log.warning("drill %s: sealed answers not posted (%s)", drill.id, describe_failure(exc))
                return

    # -- live drill message and the reminder ---------------------------------------------------

    def refresh_live_counts(self) -> int:
        """Update "N answered" on open drill messages whose count changed, at most every few seconds each."""
        now = self.clock()
        with self.db.transaction() as session:
            candidates = [
                (_Snapshot.of(d, self._tz(d.channel)), n, d)
                for d, n in repo.open_drills_with_counts(session)
                if n != d.count_shown
                and (d.count_updated_at is None or now - d.count_updated_at >= LIVE_COUNT_INTERVAL)
                and d.deadline > now
            ]
            claimed = [(snap, n) for snap, n, d in candidates if repo.claim_count_refresh(session, d, count=n, now=now)]
        for drill, count in claimed:
            try:
                question = self._question(drill.question_id)
                message = blocks.drill_message(
                    question, deadline=drill.deadline, answered=count, sealed=drill.sealed, drill_id=drill.id
                )
                self.slack.update(drill.channel, str(drill.ts), message)
                # The update may have landed after the reveal closed the drill (a 429 waited out, a slow
                # reply): then put the closed rendering back, so the message never looks open again.
                with self.db.transaction() as session:
                    row = session.get(Drill, drill.id)
                    closed_count = (
                        (row.answer_count if row.status == DrillStatus.CLOSED else repo.answerer_count(session, row.id))
                        if row is not None and row.status in (DrillStatus.REVEALING, DrillStatus.CLOSED)
                        else None
                    )
                if closed_count is not None:
                    closed = blocks.drill_message(question, deadline=drill.deadline, closed=True, answered=closed_count)
                    self.slack.update(drill.channel, str(drill.ts), closed)
            except Exception as exc:  # cosmetic; the next change retries
                log.warning("drill %s: live count not updated (%s)", drill.id, describe_failure(exc))
        return len(claimed)

    def send_reminders(self) -> int:
        """DRILL_REMINDER before the deadline: one quiet thread reply per drill, mentioning nobody."""
        reminder = self.settings.drill_reminder
        if reminder is None:
            return 0
        now = self.clock()
        sent = 0
        with self.db.transaction() as session:
            due = [
                (_Snapshot.of(d, self._tz(d.channel)), n)
                for d, n in repo.open_drills_with_counts(session)
                if d.reminded_at is None
                and d.deadline - reminder <= now < d.deadline
                and (d.posted_at is None or d.deadline - reminder > d.posted_at)
                and repo.claim_reminder(session, d.id, now)
            ]
        for drill, count in due:
            try:
                self.slack.post(
                    drill.channel,
                    blocks.reminder_message(left=drill.deadline - now, answered=count),
                    thread_ts=drill.ts,
                )
                sent += 1
            except Exception as exc:  # one quiet nudge: never a second attempt that could double it
                log.warning("drill %s: reminder not posted (%s)", drill.id, describe_failure(exc))
        return sent

    # -- sealed answers and self-ratings ---------------------------------------------------------

    def sealed_answer_form(self, drill_id: int, user_id: str) -> tuple[Question, str] | str:
        """The question and the person's current sealed answer, or why they cannot answer."""
        with self.db.transaction() as session:
            drill = session.get(Drill, drill_id)
            if drill is None or drill.ts is None:
                return "That drill no longer exists."
            if drill.status != DrillStatus.OPEN or drill.deadline <= self.clock():
                return "This drill is closed; the guidance is in its thread."
            current = next((text for user, text in repo.modal_answers(session, drill_id) if user == user_id), "")
            question_id = drill.question_id
        question = self.bank.get(question_id)
        return (question, current) if question else "That question is no longer in the bank."

    def submit_sealed_answer(self, drill_id: int, user_id: str, text: str) -> str | None:
        """Store a sealed answer; returns an error for the person, or None when stored."""
        text = _clean(text).strip()
        if not text:
            return "Write an answer first."
        now = self.clock()
        with self.db.transaction() as session:
            drill = session.get(Drill, drill_id)
            if drill is None or drill.ts is None:
                return "That drill no longer exists."
            if drill.status != DrillStatus.OPEN or drill.deadline < now:
                return "Too late: this drill closed and answers are locked."
            first = repo.upsert_modal_answer(session, drill=drill, user_id=user_id, text=text, now=now)
        if first and self.metrics:
            self.metrics.answer_recorded(drill.channel)
        return None

    def rate(self, drill_id: int, user_id: str, rating: str) -> str:
        """Record a self-rating; returns the one-line reply for the person."""
        if rating not in RATINGS:
            return "Unknown rating."
        with self.db.transaction() as session:
            drill = session.get(Drill, drill_id)
            if drill is None:
                return "That drill no longer exists."
            if not repo.has_answered(session, drill_id, user_id):
                return "Only people who answered this drill can rate themselves on it."
            question = self.bank.get(drill.question_id)
            category = question.category if question else "unknown"
            repo.upsert_rating(
                session, drill_id=drill_id, user_id=user_id, rating=rating, category=category, now=self.clock()
            )
        label = dict(blocks.RATE_CHOICES)[rating]
        return f"Saved: *{label}*. Your ratings per category are on the drillbot Home tab."

    # -- people: snooze and privacy ---------------------------------------------------------------

    def today(self, channel: str | None = None) -> date:
        program = self.program_for(channel) if (channel or len(self.programs) == 1) else None
        tz = program.schedule.tz if program else self.settings.tz
        return self.clock().astimezone(tz).date()

    def snooze(self, user_id: str, until: date) -> str:
        today = self.today()
        if until < today:
            return f"{until.isoformat()} is in the past; snooze until a later date."
        with self.db.transaction() as session:
            repo.add_snooze(session, user_id=user_id, first_day=today, last_day=until)
            for channel in repo.folded_since(session, today):  # today's drill already counted: replay it
                repo.reset_streaks(session, channel)
        return f"Snoozed until {until.isoformat()}: drills you miss until then won't break your streak."

    def resume(self, user_id: str) -> str:
        today = self.today()
        with self.db.transaction() as session:
            ended = repo.end_snooze(session, user_id=user_id, today=today)
            for channel in repo.folded_since(session, today) if ended else []:  # today's drill counts again
                repo.reset_streaks(session, channel)
        return "Welcome back: drills count for your streak again." if ended else "You were not snoozed."

    def snoozed_until(self, user_id: str) -> date | None:
        with self.db.transaction() as session:
            return repo.active_snooze_end(session, user_id, self.today())

    def set_private(self, user_id: str, private: bool) -> str:
        with self.db.transaction() as session:
            repo.set_private(session, user_id, private)
        if private:
            return "Done: you are off the leaderboard (managers see a count, not your name). You still drill as usual."
        return "Done: you are back on the leaderboard."

    def private_users(self) -> set[str]:
        with self.db.transaction() as session:
            return repo.private_users(session)

    # -- answers ---------------------------------------------------------------------------------

    def handle_message_event(self, event: Mapping[str, Any], bot_user_id: str | None) -> str:
        """Record what a `message` event means for answers; returns a short outcome for the log."""
        channel = event.get("channel")
        if not isinstance(channel, str):
            return "ignored: no channel"
        subtype = event.get("subtype")
        if subtype == "message_changed":
            message = event.get("message")
            if not isinstance(message, Mapping):
                return "ignored: edit without message"
            return self._record_edit(channel, message, event, bot_user_id)
        if subtype == "message_deleted":
            return self._record_delete(channel, event)
        return self._record_reply(channel, event, bot_user_id)

    def _drill_for_reply(self, session: Any, channel: str, message: Mapping[str, Any]) -> Drill | None:
        drill = repo.drill_by_ts(session, channel, str(message.get("thread_ts")))
        return drill if drill is not None and drill.status != DrillStatus.FAILED else None

    def _record_reply(self, channel: str, message: Mapping[str, Any], bot_user_id: str | None) -> str:
        if not is_person_reply(message, bot_user_id):
            return "ignored: not a person's thread reply"
        written = slack_ts_to_datetime(message["ts"])
        if written is None:
            return "ignored: bad ts"
        with self.db.transaction() as session:
            drill = self._drill_for_reply(session, channel, message)
            if drill is None:
                parent = slack_ts_to_datetime(message.get("thread_ts"))
                if parent is not None and repo.posting_in(session, channel, parent):
                    # The drill may be this very thread, posted but not yet confirmed: let Slack redeliver.
                    raise RetryLater(f"a drill in {channel} is still being posted")
                return "ignored: not a drill thread"
            if written > drill.deadline:
                return "ignored: after the deadline"
            new = repo.insert_answer(
                session,
                drill=drill,
                user_id=str(message["user"]),
                message_ts=str(message["ts"]),
                text=_clean(message.get("text")),
                now=self.clock(),
            )
            if new and drill.streak_applied:  # a late redelivery changed history already folded in
                repo.reset_streaks(session, channel)
        if new and self.metrics:
            self.metrics.answer_recorded(channel)
        return "answer recorded" if new else "duplicate ignored"

    def _record_edit(
        self, channel: str, message: Mapping[str, Any], event: Mapping[str, Any], bot_user_id: str | None
    ) -> str:
        if not is_person_reply(message, bot_user_id):
            return "ignored: not a person's thread reply"
        edited = slack_ts_to_datetime(event.get("event_ts") or event.get("ts"))
        with self.db.transaction() as session:
            drill = self._drill_for_reply(session, channel, message)
            if drill is None:
                return "ignored: not a drill thread"
            if edited is None or edited > drill.deadline:
                return "ignored: edited after the deadline"
            now = self.clock()
            text = _clean(message.get("text"))
            if repo.set_answer_text(session, channel=channel, message_ts=str(message["ts"]), text=text, now=now):
                return "answer updated"
            written = slack_ts_to_datetime(message["ts"])
            if written is None or written > drill.deadline:
                return "ignored: after the deadline"
            if (
                repo.insert_answer(
                    session,
                    drill=drill,
                    user_id=str(message["user"]),
                    message_ts=str(message["ts"]),
                    text=text,
                    now=now,
                )
                and drill.streak_applied
            ):
                repo.reset_streaks(session, channel)
        return "answer recorded from edit"

    def _record_delete(self, channel: str, event: Mapping[str, Any]) -> str:
        previous = event.get("previous_message")
        deleted_ts = event.get("deleted_ts") or (previous.get("ts") if isinstance(previous, Mapping) else None)
        if not isinstance(deleted_ts, str):
            return "ignored: delete without ts"
        deleted_at = slack_ts_to_datetime(event.get("event_ts") or event.get("ts")) or self.clock()
        with self.db.transaction() as session:
            answer_drill = repo.drill_of_answer(session, channel, deleted_ts)
            if answer_drill is None:
                return "ignored: not an answer"
            keep = deleted_at > answer_drill.deadline
            repo.withdraw_answer(session, channel=channel, message_ts=deleted_ts, now=self.clock(), keep_count=keep)
        return "answer text erased" if keep else "answer withdrawn"

    # -- streaks ---------------------------------------------------------------------------------

    def leaderboard(self, channel: str | None = None) -> list[Streak]:
        """Everyone's streak in the channel: the stored state plus the drills not folded into it yet."""
        now = self.clock()
        with self.db.transaction() as session:
            channel = self._leaderboard_channel(session, channel)
            if channel is None:
                return []
            backlog = repo.pending_streak_drills(session, channel)
        if sum(1 for d in backlog[: FOLD_BACKLOG + 1] if d.status in _FINAL_STATES) > FOLD_BACKLOG:
            self.fold_streaks(channel)  # e.g. after a rebuild: fold once instead of replaying on every read
        with self.db.transaction(snapshot=True) as session:
            stored = _stored_streaks(session, channel)
            pending = repo.pending_streak_drills(session, channel)
            answered = repo.answered_in(session, [d.id for d in pending])
            snoozes = repo.snoozes_by_user(session)
        refs = [DrillRef(d.id, d.status in _OPEN_STATES and d.deadline > now, d.day) for d in pending]
        return rank(compute_streaks(refs, answered, start=stored, snoozes=snoozes).values())

    def _leaderboard_channel(self, session: Any, channel: str | None) -> str | None:
        if channel is not None:
            return channel
        if len(self.programs) == 1:
            return self.programs[0].channel
        if self.programs:
            return self.program_for(None).channel  # several programs: raises, naming them
        channels = repo.drill_channels(session)
        if len(channels) > 1:
            raise ConfigError(f"drills exist in several channels ({', '.join(channels)}); name one with --channel")
        return channels[0] if channels else None

    def fold_streaks(self, channel: str) -> int:
        """Fold closed drills, in order, into the stored streaks; returns how many were folded.

        Stops at the first drill that is still open or being revealed, so the state is always "as of
        drill N". Two processes folding at once: only one wins the claim; the other rolls back.
        """
        try:
            with self.db.transaction() as session:
                refs = []
                for drill in repo.pending_streak_drills(session, channel):
                    if drill.status not in _FINAL_STATES:
                        break
                    refs.append(DrillRef(drill.id, False, drill.day))
                ids = [r.id for r in refs]
                if not ids:
                    return 0
                if not repo.claim_streak_fold(session, ids):
                    raise _FoldConflict
                folded = compute_streaks(
                    refs,
                    repo.answered_in(session, ids),
                    start=_stored_streaks(session, channel),
                    snoozes=repo.snoozes_by_user(session),
                )
                rows = ((s.user_id, s.current, s.longest, s.total) for s in folded.values())
                repo.replace_streak_states(session, channel, rows)
        except _FoldConflict:
            return 0
        return len(ids)

    # -- helpers ---------------------------------------------------------------------------------

    def _can_take_over(self, drill: Drill, now: datetime) -> bool:
        return can_take_over(
            claimed_by=drill.claimed_by,
            claimed_at=drill.claimed_at,
            attempts=drill.attempts,
            now=now,
            me=self.owner,
            pid_alive=self.pid_alive,
            live_nonces=_LIVE_NONCES,
        )

    def _question(self, question_id: str) -> Question:
        question = self.bank.get(question_id)
        if question is None:
            bank = self.settings.questions_file
            raise QuestionBankError(f"question {question_id!r} is no longer in the bank ({bank})")
        return question
