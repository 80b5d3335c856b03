"""The drill loop, one service per step: posting, revealing, the live message, answers, streaks, people.

The lifecycle the steps move a drill through is written down in `bot.domain.lifecycle`; what the steps
share (collaborators, programs, claims) is `bot.drills.loop.Loop`; the Slack calls they make are the
`bot.drills.port.SlackPort` interface. `DrillService` builds them all for one running bot and is what
the scheduler, the listeners and the CLI hold: each of its attributes is one step's service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from bot.domain.claims import Owner
from bot.domain.programs import Program
from bot.domain.questions import Question, QuestionBank
from bot.domain.streaks import Streak
from bot.drills.answers import Answers, SealedResult
from bot.drills.digest import Digest
from bot.drills.feedback import Feedback
from bot.drills.history import History
from bot.drills.live import LIVE_COUNT_INTERVAL, LiveMessage
from bot.drills.loop import Loop, build_programs, describe_failure, utcnow
from bot.drills.people import People
from bot.drills.port import SlackPort
from bot.drills.posting import Poster, PostOutcome, PostResult
from bot.drills.revealing import Revealer
from bot.drills.streaks import FOLD_BACKLOG, Streaks
from bot.errors import RetryLater
from bot.grader import Grader
from bot.metrics import Metrics
from bot.settings import Settings
from storage.db import Database

__all__ = [
    "FOLD_BACKLOG",
    "LIVE_COUNT_INTERVAL",
    "DrillService",
    "PostOutcome",
    "PostResult",
    "SealedResult",
    "build_programs",
    "describe_failure",
    "utcnow",
]


class DrillService:
    """The step services of one running bot, built around one `Loop`."""

    def __init__(
        self,
        *,
        settings: Settings,
        bank: QuestionBank,
        db: Database,
        slack: SlackPort,
        clock: Callable[[], datetime] = utcnow,
        programs: list[Program] | None = None,
        metrics: Metrics | None = None,
        owner: Owner | None = None,
        grader: Grader | None = None,
    ) -> None:
        self.loop = Loop(
            settings=settings,
            bank=bank,
            db=db,
            slack=slack,
            clock=clock,
            metrics=metrics,
            programs=build_programs(settings, bank) if programs is None else programs,
            owner=owner or Owner(),
        )
        self.streaks = Streaks(self.loop)
        self.posting = Poster(self.loop)
        self.revealing = Revealer(self.loop, on_closed=self.streaks.fold_streaks)
        self.live = LiveMessage(self.loop)
        self.answers = Answers(self.loop)
        self.people = People(self.loop)
        self.history = History(self.loop)
        self.feedback = Feedback(self.loop, grader=grader)
        self.digest = Digest(self.loop, feedback=self.feedback)

    # The shared collaborators, read-only, for the modules that build views from them.
    @property
    def settings(self) -> Settings:
        return self.loop.settings

    @property
    def bank(self) -> QuestionBank:
        return self.loop.bank

    @property
    def db(self) -> Database:
        return self.loop.db

    @property
    def slack(self) -> SlackPort:
        return self.loop.slack

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.loop.clock

    @property
    def metrics(self) -> Metrics | None:
        return self.loop.metrics

    @property
    def programs(self) -> list[Program]:
        return self.loop.programs

    @property
    def owner(self) -> Owner:
        return self.loop.owner

    def close(self) -> None:
        """Nothing to release: claims are trusted by their lease alone (kept for callers that stop a bot)."""

    def program_for(self, channel: str | None = None) -> Program:
        return self.loop.program_for(channel)

    def is_manager(self, user_id: str, channel: str | None = None) -> bool:
        return self.loop.is_manager(user_id, channel)

    def question_of(self, drill: Any) -> Question:
        return self.loop.question_of(drill)

    # -- the steps, by name (scheduler jobs and CLI commands call these) -----------------------------

    def send_feedback(self) -> int:
        return self.feedback.send_due()

    def send_digest(self) -> int:
        return self.digest.send_due()

    def post_if_due(self) -> list[PostOutcome]:
        return self.posting.post_if_due()

    def post_today(self, channel: str | None = None, *, retry_failed: bool = False) -> PostOutcome:
        return self.posting.post_today(channel, retry_failed=retry_failed)

    def reveal_due(self, *, retry_failed: bool = False) -> list[int]:
        return self.revealing.reveal_due(retry_failed=retry_failed)

    def refresh_live_counts(self) -> int:
        return self.live.refresh_live_counts()

    def send_reminders(self) -> int:
        return self.live.send_reminders()

    def handle_message_event(self, event: Mapping[str, Any], bot_user_id: str | None) -> str:
        return self.answers.handle_message_event(event, bot_user_id)

    def record_replies(
        self, messages: Sequence[Mapping[str, Any]], bot_user_id: str | None, *, wait: bool = True
    ) -> list[str | RetryLater]:
        return self.answers.record_replies(messages, bot_user_id, wait=wait)

    def sealed_answer_form(self, drill_id: int, user_id: str) -> tuple[Question, str] | SealedResult:
        return self.answers.sealed_answer_form(drill_id, user_id)

    def submit_sealed_answer(self, drill_id: int, user_id: str, text: str) -> SealedResult:
        return self.answers.submit_sealed_answer(drill_id, user_id, text)

    def rate(self, drill_id: int, user_id: str, rating: str) -> str | None:
        return self.answers.rate(drill_id, user_id, rating)

    def leaderboard(self, channel: str | None = None) -> list[Streak]:
        return self.streaks.leaderboard(channel)

    def fold_streaks(self, channel: str) -> int:
        return self.streaks.fold_streaks(channel)

    def today(self, channel: str | None = None) -> date:
        return self.people.today(channel)

    def snooze(self, user_id: str, until: date) -> bool:
        return self.people.snooze(user_id, until)

    def resume(self, user_id: str) -> bool:
        return self.people.resume(user_id)

    def snoozed_until(self, user_id: str) -> date | None:
        return self.people.snoozed_until(user_id)

    def set_private(self, user_id: str, private: bool) -> None:
        return self.people.set_private(user_id, private)

    def private_users(self) -> set[str]:
        return self.people.private_users()
