"""Tables. Times are stored in UTC and always come back timezone-aware.

`drills` holds one row per channel per local day (the unique constraint is what makes "at most one
drill a day" true across processes). Its `status` is the lifecycle written down in
`bot.domain.lifecycle` (states and transitions); every change of it is one conditional UPDATE in
`storage.repo.transition` whose row count says which process won the step.

`claimed_by`/`claimed_at` say which process is doing the current step and when its lease started; a
claim is trusted until its lease runs out (the owner renews it while it waits on Slack), then taken
over after checking Slack for the message the previous owner may already have posted.

A drill stores the question as it was asked (`question`, JSON): the reveal, Home, export and digest
show that copy, whatever later happens to the bank file.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.domain.answers import AnswerSource
from bot.domain.lifecycle import DrillState

__all__ = [
    "Answer",
    "Base",
    "DigestSent",
    "Drill",
    "DrillStatus",
    "FeedbackDM",
    "KeyPointTick",
    "PracticeView",
    "Rating",
    "Snooze",
    "StreakRebuild",
    "StreakState",
    "UTCDateTime",
    "UserPrefs",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that is stored as UTC and read back as an aware UTC datetime, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


# The lifecycle's states; one definition, in the domain (kept importable from here for callers).
DrillStatus = DrillState


def _domain_enum(enum: type[DrillState] | type[AnswerSource], name: str) -> Enum:
    """A domain enum as a column: its values stored as text (VARCHAR(16) with a CHECK constraint named
    `name`, not a native PostgreSQL type: a new state is a migration of a constraint, not of a type), read
    back as the enum's members; a value outside it is refused before the database sees it."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Drill(Base):
    __tablename__ = "drills"
    __table_args__ = (
        UniqueConstraint("channel", "day", name="uq_drills_channel_day"),
        Index("ix_drills_channel_ts", "channel", "ts"),
        Index("ix_drills_status_deadline", "status", "deadline"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    day: Mapped[date] = mapped_column(Date)
    question_id: Mapped[str] = mapped_column(String(80))
    # The question as asked (Question.snapshot()); "missing" marks a backfill that found no such id.
    question: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[DrillState] = mapped_column(_domain_enum(DrillState, "ck_drills_status"), default=DrillState.POSTING)
    ts: Mapped[str | None] = mapped_column(String(32), default=None)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    reveal_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    revealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    answer_count: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    error: Mapped[str | None] = mapped_column(String(255), default=None)
    # True once this closed drill has been folded into `streaks` (in drill order, see StreakState).
    streak_applied: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Sealed drills take answers in a modal and reveal them with the guidance (DRILL_SEALED at post time).
    sealed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The live "N answered" on the drill message: what it shows, and when it was last refreshed.
    count_shown: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    count_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("channel", "message_ts", name="uq_answers_channel_message_ts"),
        Index("ix_answers_drill_user", "drill_id", "user_id"),
        Index("ix_answers_user", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    drill_id: Mapped[int] = mapped_column(ForeignKey("drills.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[AnswerSource] = mapped_column(
        _domain_enum(AnswerSource, "ck_answers_source"), default=AnswerSource.THREAD, server_default="thread"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StreakState(Base):
    """Each person's streak in a channel as of the last closed drill folded in (`Drill.streak_applied`).

    Kept up to date as drills close, so a leaderboard reads one row per person plus the few drills not
    folded in yet, instead of replaying years of answers. `bot.domain.streaks` is the one rule for both.
    """

    __tablename__ = "streaks"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    current: Mapped[int] = mapped_column(Integer, default=0)
    longest: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)


class StreakRebuild(Base):
    """A channel whose stored streaks are stale: history already folded in changed (a late answer, a
    withdrawn one, a snooze). The next fold rebuilds the channel from its answers and deletes the row.

    Writers that changed history only insert this row; they never touch other drills' rows, so an answer
    path holding a share lock on its drill cannot deadlock with another (see `storage.repo` lock order).
    """

    __tablename__ = "streak_rebuilds"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Rating(Base):
    """A person's self-rating after a reveal: nailed it / partly / missed."""

    __tablename__ = "ratings"
    __table_args__ = (Index("ix_ratings_user", "user_id"),)

    drill_id: Mapped[int] = mapped_column(ForeignKey("drills.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rating: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64))
    rated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PracticeView(Base):
    """Which practice questions a person has seen, and when (spaced repetition)."""

    __tablename__ = "practice_views"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    question_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    times: Mapped[int] = mapped_column(Integer, default=1)


class Snooze(Base):
    """A person's break from drills: drills on these days (inclusive) never break their streak."""

    __tablename__ = "snoozes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)


class UserPrefs(Base):
    """Per-person choices: `private` keeps them off leaderboards (managers see a count instead); `feedback`
    off stops the checklist DMs (and grading). `dm_channel` is the app's DM with them, once known."""

    __tablename__ = "user_prefs"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    feedback: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    dm_channel: Mapped[str | None] = mapped_column(String(32), default=None)


class FeedbackDM(Base):
    """One per person and drill: the claim that sends the key-point checklist once (like a reveal's).

    `status`: sending (claimed: `claimed_by` until its lease runs out) / sent / skipped (feedback off, or
    nothing to tick). A takeover looks for the DM by its metadata before sending it again.
    """

    __tablename__ = "feedback_dms"

    drill_id: Mapped[int] = mapped_column(ForeignKey("drills.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="sending")
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    channel: Mapped[str | None] = mapped_column(String(32), default=None)
    ts: Mapped[str | None] = mapped_column(String(32), default=None)
    # The grader's view (when DRILL_GRADER_URL is set): covered key point indices (JSON), two sentences.
    graded: Mapped[str | None] = mapped_column(Text, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class KeyPointTick(Base):
    """What a person says their answer covered: one row per person, drill and key point (its index in the
    drill's stored question). Saving a checklist replaces the person's rows for that drill."""

    __tablename__ = "key_point_ticks"

    drill_id: Mapped[int] = mapped_column(ForeignKey("drills.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_point: Mapped[int] = mapped_column(Integer, primary_key=True)
    covered: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DigestSent(Base):
    """One row per DRILL_DIGEST slot, program and manager: the claim that sends each digest DM once.

    `slot` is the slot's local wall-clock time in the program's zone ("2026-11-01T01:30"), so the two
    instants a wall-clock time has when DST ends are one slot, sent once.
    """

    __tablename__ = "digests"

    slot: Mapped[str] = mapped_column(String(32), primary_key=True)
    program: Mapped[str] = mapped_column(String(64), primary_key=True)
    manager: Mapped[str] = mapped_column(String(32), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
