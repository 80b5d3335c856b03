"""Queries. Functions take the caller's Session and never commit: the caller owns the transaction.

State changes that several processes may race on are single conditional statements (INSERT ... ON
CONFLICT DO NOTHING, UPDATE ... WHERE status = ...) whose row count says who won; a drill's state only
changes through `claim` / `finish` (checked against `bot.domain.lifecycle.TRANSITIONS`).

Lock order (PostgreSQL), the same on every path so no two transactions wait on each other in a cycle:
`drills` rows first, then `streak_rebuilds`, then `streaks`. The answer path takes a share lock on its
drill and may then insert a `streak_rebuilds` row; it never writes another drill's row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, TypeAlias, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.domain.answers import AnswerSource
from bot.domain.lifecycle import ANSWERABLE, DrillState, check_transition
from storage.models import (
    Answer,
    DigestSent,
    Drill,
    FeedbackDM,
    KeyPointTick,
    PracticeView,
    Rating,
    Snooze,
    StreakRebuild,
    StreakState,
    UserPrefs,
    UTCDateTime,
)
from storage.prepared import Prepared

# The answer path runs on a bare Core connection; the other queries on an ORM session. Both execute Core.
Conn: TypeAlias = Connection | Session


def _dialect(conn: Conn) -> str:
    return conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name


def _insert(conn: Conn):  # type: ignore[no-untyped-def]
    return pg_insert if _dialect(conn) == "postgresql" else sqlite_insert


def drill_for_day(session: Session, channel: str, day: date) -> Drill | None:
    return session.scalar(select(Drill).where(Drill.channel == channel, Drill.day == day))


def drill_by_ts(session: Session, channel: str, ts: str) -> Drill | None:
    return session.scalar(select(Drill).where(Drill.channel == channel, Drill.ts == ts))


def used_question_ids(session: Session, channel: str) -> list[str]:
    return list(session.scalars(select(Drill.question_id).where(Drill.channel == channel).order_by(Drill.id)))


def insert_drill(
    session: Session,
    *,
    channel: str,
    day: date,
    question_id: str,
    question: str | None,
    deadline: datetime,
    owner: str,
    now: datetime,
    sealed: bool = False,
) -> Drill | None:
    """Record the intent to post the day's drill (claimed by `owner`); None when another process recorded it."""
    stmt = (
        _insert(session)(Drill)
        .values(
            channel=channel,
            day=day,
            question_id=question_id,
            question=question,
            status=DrillState.POSTING,
            deadline=deadline,
            answer_count=0,
            attempts=1,
            claimed_by=owner,
            claimed_at=now,
            sealed=sealed,
        )
        .on_conflict_do_nothing(index_elements=["channel", "day"])
        .returning(Drill.id)
    )
    if session.execute(stmt).scalar_one_or_none() is None:
        return None
    return drill_for_day(session, channel, day)


def claim(session: Session, drill: Drill, *, to: DrillState, owner: str, now: datetime, **values: object) -> bool:
    """Start (or take over) a step: compare-and-set against the row exactly as `drill` read it.

    Wins only if nobody changed the state or the claim since; `attempts` counts tries of the same step
    (its retry delay grows with them) and starts at 1 for a new step.
    """
    check_transition(drill.status, to)
    same_claim = Drill.claimed_at.is_(None) if drill.claimed_at is None else Drill.claimed_at == drill.claimed_at
    result = session.execute(
        update(Drill)
        .where(Drill.id == drill.id, Drill.status == drill.status, same_claim)
        .values(
            status=to,
            claimed_by=owner,
            claimed_at=now,
            attempts=Drill.attempts + 1 if _same_step(drill.status, to) else 1,
            error=None,
            **values,
        )
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def _same_step(source: str, target: str) -> bool:
    """A takeover, or a retry of a refused step: its delay keeps growing."""
    return source == target or (source, target) in {
        (DrillState.POST_FAILED, DrillState.POSTING),
        (DrillState.REVEAL_FAILED, DrillState.REVEALING),
    }


def finish(
    session: Session, drill_id: int, *, source: DrillState, to: DrillState, owner: str, **values: object
) -> bool:
    """End the step `owner` holds with the transition source -> to; False when the claim was lost."""
    check_transition(source, to)
    result = session.execute(
        update(Drill)
        .where(Drill.id == drill_id, Drill.status == source, Drill.claimed_by == owner)
        .values({"status": to, "claimed_by": None, "claimed_at": None, **values})
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def renew(session: Session, drill_id: int, *, owner: str, now: datetime) -> bool:
    """Extend the lease of the step `owner` holds; False when it was taken over."""
    result = session.execute(
        update(Drill).where(Drill.id == drill_id, Drill.claimed_by == owner).values(claimed_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def release(session: Session, drill_id: int, *, owner: str, now: datetime, error: str | None = None) -> bool:
    """Give up a step after an uncertain failure; the next attempt waits a growing delay from `now`."""
    result = session.execute(
        update(Drill)
        .where(Drill.id == drill_id, Drill.claimed_by == owner)
        .values(claimed_by=None, claimed_at=now, error=error[:255] if error else None)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def drills_needing_reveal(session: Session, now: datetime) -> list[Drill]:
    """Open drills whose deadline has passed, reveals refused earlier, and reveal steps in flight."""
    conditions = [
        and_(Drill.status == DrillState.OPEN, Drill.deadline <= now),
        Drill.status.in_([DrillState.REVEALING, DrillState.REVEAL_FAILED, DrillState.SEALING]),
    ]
    stmt = select(Drill).where(or_(*conditions))
    return list(session.scalars(stmt.order_by(Drill.deadline, Drill.id)))


# -- the answer path: prepared Core statements on the caller's connection, no ORM objects -------------


class AnswerTarget(NamedTuple):
    """What the answer path needs of a drill (one row, read under a share lock)."""

    id: int
    channel: str
    status: str
    deadline: datetime
    streak_applied: bool


_drills = cast(Table, Drill.__table__)
_answers = cast(Table, Answer.__table__)
# `bot.domain.lifecycle.ANSWERABLE`, written into the statement (a fixed list of identifiers): a bound list
# would be expanded into the SQL again on every execution. Sorted: the same text on every run.
_ANSWERABLE: list[ColumnElement[str]] = [literal_column(f"'{state.value}'") for state in sorted(ANSWERABLE)]


def accepts_answer_sql(
    status: ColumnElement[Any], deadline: ColumnElement[Any], written_at: Any
) -> ColumnElement[bool]:
    """`bot.domain.lifecycle.accepts_answer` as a SQL condition (tests/test_answer_rule.py checks that the two
    agree on every state and on deadlines around the time written): a posted drill, written before its deadline."""
    return and_(status.in_(_ANSWERABLE), deadline > written_at)


def _answer_insert(dialect: str, *, folded: bool) -> Executable:
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    now = bindparam("now", type_=UTCDateTime())
    written_at = bindparam("written_at", type_=UTCDateTime())
    source = select(
        _drills.c.id,
        _drills.c.channel,
        bindparam("message_ts", type_=String()),
        bindparam("user_id", type_=String()),
        bindparam("text", type_=Text()),
        false(),
        literal_column(f"'{AnswerSource.THREAD.value}'"),
        now,
        now,
    ).where(
        _drills.c.channel == bindparam("channel", type_=String()),
        _drills.c.ts == bindparam("thread_ts", type_=String()),
        accepts_answer_sql(_drills.c.status, _drills.c.deadline, written_at),
    )
    if not folded:
        # A drill already folded into the stored streaks also needs a rebuild request: the caller's second
        # path (`answer_target`, then this statement with folded=True) does that.
        source = source.where(~_drills.c.streak_applied)
    if dialect == "postgresql":
        # A share lock on the drill: a fold's UPDATE of the row waits for this answer's commit, and a fold
        # that committed first is seen (the row is re-read after the wait, and `streak_applied` re-checked).
        source = source.with_for_update(read=True, of=_drills)
    columns = ["drill_id", "channel", "message_ts", "user_id", "text", "deleted", "source", "created_at", "updated_at"]
    return (
        insert_(_answers)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=["channel", "message_ts"])
        .returning(_answers.c.id)
    )


# Built once per dialect and compiled once (`Prepared`): the answer path runs it for every reply.
_ANSWER_INSERTS = {
    (dialect, folded): Prepared(_answer_insert(dialect, folded=folded))
    for dialect in ("sqlite", "postgresql")
    for folded in (False, True)
}


class ThreadReply(NamedTuple):
    """A person's reply in a thread, as the answer path stores it (text already cleaned)."""

    channel: str
    thread_ts: str
    message_ts: str
    user_id: str
    text: str
    written_at: datetime
    now: datetime


def insert_answer(conn: Conn, *, reply: ThreadReply, folded: bool = False) -> bool:
    """Store a thread reply as an answer to the drill whose message is `reply.thread_ts`, in one statement.

    `INSERT ... SELECT` from that drill's row, with the acceptance rule (`accepts_answer_sql`) in the
    statement; a redelivery (same channel and ts) inserts nothing. True when a row was stored. Without
    `folded`, a drill already folded into the stored streaks is not answered here (False): the caller then
    reads it with `answer_target` and asks for a rebuild along with the answer.
    """
    assert isinstance(conn, Connection), "the answer path runs on a bare Core connection (Database.begin)"
    return bool(_ANSWER_INSERTS[(conn.dialect.name, folded)].rows(conn, reply._asdict()))


def _target_select(dialect: str, by_answer: bool) -> Executable:
    columns = (_drills.c.id, _drills.c.channel, _drills.c.status, _drills.c.deadline, _drills.c.streak_applied)
    if by_answer:
        stmt = (
            select(*columns)
            .join_from(_drills, _answers, _answers.c.drill_id == _drills.c.id)
            .where(_answers.c.channel == bindparam("channel"), _answers.c.message_ts == bindparam("ts"))
        )
    else:
        stmt = select(*columns).where(_drills.c.channel == bindparam("channel"), _drills.c.ts == bindparam("ts"))
    return stmt.with_for_update(read=True, of=_drills) if dialect == "postgresql" else stmt


_TARGETS = {(d, by): _target_select(d, by) for d in ("sqlite", "postgresql") for by in (False, True)}


def answer_target(conn: Conn, channel: str, thread_ts: str) -> AnswerTarget | None:
    """The drill whose message is `thread_ts`, read under a share lock (PostgreSQL; SQLite serialises).

    The lock makes the answer and a streak fold of the same drill take turns: the fold's UPDATE of the
    row waits for this transaction, and reads the answer once it has committed.
    """
    row = conn.execute(_TARGETS[(_dialect(conn), False)], {"channel": channel, "ts": thread_ts}).first()
    return AnswerTarget(*row) if row is not None else None


def answer_target_of(conn: Conn, channel: str, message_ts: str) -> AnswerTarget | None:
    """The drill a stored answer belongs to, under a share lock like `answer_target`."""
    row = conn.execute(_TARGETS[(_dialect(conn), True)], {"channel": channel, "ts": message_ts}).first()
    return AnswerTarget(*row) if row is not None else None


class ThreadLookup(NamedTuple):
    """A thread reply the one-statement path did not store: the drill of the thread (if any), and whether a
    drill of the channel is still being posted (the thread may be that drill, not confirmed yet)."""

    drill: AnswerTarget | None
    posting: bool


# A drill still being posted may be the thread's parent if it was claimed before the parent was written (a
# minute of clock skew between this host and Slack allowed).
POSTING_SKEW = timedelta(minutes=1)
_LOOKUP_COLUMNS = (_drills.c.id, _drills.c.channel, _drills.c.status, _drills.c.deadline, _drills.c.streak_applied)
# Two index probes in one statement: the thread's drill (channel, ts), and drills still being posted (status).
# Prepared: every reply in a thread that is not a drill's (most replies in a busy channel) runs it.
_LOOKUP = Prepared(union_all(
    select(*_LOOKUP_COLUMNS, literal_column("1").label("matches")).where(
        _drills.c.channel == bindparam("channel", type_=String()), _drills.c.ts == bindparam("ts", type_=String())
    ),
    select(*_LOOKUP_COLUMNS, literal_column("0").label("matches")).where(
        _drills.c.status == literal_column(f"'{DrillState.POSTING.value}'"),
        _drills.c.channel == bindparam("channel", type_=String()),
        _drills.c.created_at <= bindparam("cutoff", type_=UTCDateTime()),
    ),
))
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def thread_lookup(conn: Conn, channel: str, thread_ts: str, parent_posted: datetime | None) -> ThreadLookup:
    """One indexed read, no lock: what `insert_answer` found no answer for. A caller that goes on to store an
    answer re-reads the drill under its lock (`answer_target`)."""
    cutoff = parent_posted + POSTING_SKEW if parent_posted is not None else _NEVER
    drill, posting = None, False
    assert isinstance(conn, Connection), "the answer path runs on a bare Core connection (Database.begin)"
    for *columns, matches in _LOOKUP.rows(conn, {"channel": channel, "ts": thread_ts, "cutoff": cutoff}):
        if matches:
            drill = AnswerTarget(*columns)
        else:
            posting = True
    return ThreadLookup(drill, posting)


def set_answer_text(conn: Conn, *, channel: str, message_ts: str, text: str, now: datetime) -> bool:
    result = conn.execute(
        update(Answer)
        .where(Answer.channel == channel, Answer.message_ts == message_ts)
        .values(text=text, updated_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def withdraw_answer(conn: Conn, *, channel: str, message_ts: str, now: datetime, keep_count: bool) -> bool:
    """A deleted reply: its text is erased; it stops counting unless `keep_count` (drill already closed)."""
    values: dict[str, object] = {"text": "", "updated_at": now}
    if not keep_count:
        values["deleted"] = True
    result = conn.execute(
        update(Answer).where(Answer.channel == channel, Answer.message_ts == message_ts).values(**values)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def drill_by_id_for_answer(session: Session, drill_id: int) -> Drill | None:
    """A drill by id under a share lock (sealed answers): the reveal's claim waits for this transaction."""
    return session.scalar(select(Drill).where(Drill.id == drill_id).with_for_update(read=True))


def answerer_count(session: Session, drill_id: int) -> int:
    stmt = select(func.count(func.distinct(Answer.user_id))).where(Answer.drill_id == drill_id, ~Answer.deleted)
    return int(session.scalar(stmt) or 0)


def drill_channels(session: Session) -> list[str]:
    return list(session.scalars(select(Drill.channel).where(Drill.ts.is_not(None)).distinct().order_by(Drill.channel)))


def pending_streak_drills(session: Session, channel: str) -> list[Drill]:
    """Posted drills not folded into the stored streaks yet, in drill order."""
    stmt = select(Drill).where(Drill.channel == channel, Drill.ts.is_not(None), ~Drill.streak_applied)
    return list(session.scalars(stmt.order_by(Drill.day, Drill.id)))


def answered_in(session: Session, drill_ids: Sequence[int]) -> dict[str, set[int]]:
    """Who answered which of these drills (withdrawn answers excluded)."""
    result: dict[str, set[int]] = defaultdict(set)
    if not drill_ids:
        return {}
    stmt = select(Answer.user_id, Answer.drill_id).where(Answer.drill_id.in_(drill_ids), ~Answer.deleted).distinct()
    for user_id, drill_id in session.execute(stmt):
        result[user_id].add(drill_id)
    return dict(result)


def streak_states(session: Session, channel: str) -> list[tuple[str, int, int, int]]:
    """(user, current, longest, total) per person: plain rows, no ORM objects (thousands per leaderboard)."""
    stmt = select(StreakState.user_id, StreakState.current, StreakState.longest, StreakState.total)
    return [(u, c, lo, t) for u, c, lo, t in session.execute(stmt.where(StreakState.channel == channel))]


def claim_streak_fold(session: Session, drill_ids: Sequence[int]) -> bool:
    """Mark drills as folded into the streaks; False if another process folded any of them first."""
    result = session.execute(
        update(Drill).where(Drill.id.in_(drill_ids), ~Drill.streak_applied).values(streak_applied=True)
    )
    return result.rowcount == len(drill_ids)  # type: ignore[attr-defined, no-any-return]


def replace_streak_states(session: Session, channel: str, rows: Iterable[tuple[str, int, int, int]]) -> None:
    """Store (user, current, longest, total) for the channel, replacing what was there."""
    session.execute(delete(StreakState).where(StreakState.channel == channel))
    values = [
        {"channel": channel, "user_id": user, "current": current, "longest": longest, "total": total}
        for user, current, longest, total in rows
    ]
    if values:
        session.execute(insert(StreakState), values)


def request_streak_rebuild(conn: Conn, channel: str, now: datetime) -> None:
    """History already folded into the channel's streaks changed: the next fold rebuilds them."""
    stmt = _insert(conn)(StreakRebuild).values(channel=channel, requested_at=now)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["channel"]))


def streak_rebuild_requested(session: Session, channel: str) -> bool:
    return session.scalar(select(StreakRebuild.channel).where(StreakRebuild.channel == channel)) is not None


def unfold_streaks(session: Session, channel: str) -> None:
    """Forget the stored streaks of a channel, to fold them again from the answers (drills, then streaks)."""
    session.execute(update(Drill).where(Drill.channel == channel, Drill.streak_applied).values(streak_applied=False))
    session.execute(delete(StreakRebuild).where(StreakRebuild.channel == channel))
    session.execute(delete(StreakState).where(StreakState.channel == channel))


# -- the drill experience: sealed answers, live counts, reminders, ratings, practice ----------------


def modal_answer_ts(drill_id: int, user_id: str) -> str:
    """The key of a sealed answer: one per person per drill (a new submission replaces it)."""
    return f"modal:{drill_id}:{user_id}"


def upsert_modal_answer(session: Session, *, drill: Drill, user_id: str, text: str, now: datetime) -> bool:
    """Store or replace a person's sealed answer; True when it is their first for this drill."""
    ts = modal_answer_ts(drill.id, user_id)
    existing = session.scalar(select(Answer.id).where(Answer.channel == drill.channel, Answer.message_ts == ts))
    stmt = _insert(session)(Answer).values(
        drill_id=drill.id,
        channel=drill.channel,
        message_ts=ts,
        user_id=user_id,
        text=text,
        deleted=False,
        source=AnswerSource.MODAL,
        created_at=now,
        updated_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel", "message_ts"], set_={"text": text, "updated_at": now, "deleted": False}
    )
    session.execute(stmt)
    return existing is None


def modal_answers(session: Session, drill_id: int) -> list[tuple[str, str]]:
    stmt = (
        select(Answer.user_id, Answer.text)
        .where(Answer.drill_id == drill_id, Answer.source == AnswerSource.MODAL, ~Answer.deleted)
        .order_by(Answer.created_at, Answer.id)
    )
    return [(user, text) for user, text in session.execute(stmt)]


def has_answered(session: Session, drill_id: int, user_id: str) -> bool:
    stmt = select(Answer.id).where(Answer.drill_id == drill_id, Answer.user_id == user_id, ~Answer.deleted).limit(1)
    return session.scalar(stmt) is not None


def open_drills_with_counts(session: Session) -> list[tuple[Drill, int]]:
    """Open, posted drills with how many people have answered each."""
    counts = (
        select(Answer.drill_id, func.count(func.distinct(Answer.user_id)).label("n"))
        .where(~Answer.deleted)
        .group_by(Answer.drill_id)
        .subquery()
    )
    stmt = (
        select(Drill, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.drill_id == Drill.id)
        .where(Drill.status == DrillState.OPEN, Drill.ts.is_not(None))
        .order_by(Drill.id)
    )
    return [(drill, int(n)) for drill, n in session.execute(stmt)]


def claim_count_refresh(session: Session, drill: Drill, *, count: int, now: datetime) -> bool:
    same = (
        Drill.count_updated_at.is_(None)
        if drill.count_updated_at is None
        else Drill.count_updated_at == drill.count_updated_at
    )
    result = session.execute(
        update(Drill).where(Drill.id == drill.id, same).values(count_shown=count, count_updated_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def claim_reminder(session: Session, drill_id: int, now: datetime) -> bool:
    result = session.execute(
        update(Drill).where(Drill.id == drill_id, Drill.reminded_at.is_(None)).values(reminded_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def upsert_rating(session: Session, *, drill_id: int, user_id: str, rating: str, category: str, now: datetime) -> None:
    stmt = _insert(session)(Rating).values(
        drill_id=drill_id, user_id=user_id, rating=rating, category=category, rated_at=now
    )
    session.execute(
        stmt.on_conflict_do_update(index_elements=["drill_id", "user_id"], set_={"rating": rating, "rated_at": now})
    )


def ratings_by_category(session: Session, user_id: str) -> dict[str, dict[str, int]]:
    stmt = (
        select(Rating.category, Rating.rating, func.count())
        .where(Rating.user_id == user_id)
        .group_by(Rating.category, Rating.rating)
    )
    result: dict[str, dict[str, int]] = defaultdict(dict)
    for category, rating, n in session.execute(stmt):
        result[category][rating] = int(n)
    return dict(result)


def record_practice_view(session: Session, *, user_id: str, question_id: str, now: datetime) -> None:
    stmt = _insert(session)(PracticeView).values(user_id=user_id, question_id=question_id, seen_at=now, times=1)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id", "question_id"], set_={"seen_at": now, "times": PracticeView.times + 1}
        )
    )


def practice_seen(session: Session, user_id: str) -> dict[str, datetime]:
    stmt = select(PracticeView.question_id, PracticeView.seen_at).where(PracticeView.user_id == user_id)
    return {qid: seen for qid, seen in session.execute(stmt)}


def recent_drills(session: Session, channel: str, *, limit: int, closed_only: bool = False) -> list[Drill]:
    stmt = select(Drill).where(Drill.channel == channel, Drill.ts.is_not(None))
    if closed_only:
        stmt = stmt.where(Drill.status == DrillState.CLOSED)
    return list(session.scalars(stmt.order_by(Drill.day.desc(), Drill.id.desc()).limit(limit)))


def answers_of_user(session: Session, channel: str, user_id: str) -> int:
    stmt = select(func.count(func.distinct(Answer.drill_id))).where(
        Answer.channel == channel, Answer.user_id == user_id, ~Answer.deleted
    )
    return int(session.scalar(stmt) or 0)


# -- people: snoozes, privacy; the digest claim -----------------------------------------------------


def snoozes_by_user(session: Session, user_ids: Iterable[str] | None = None) -> dict[str, list[tuple[date, date]]]:
    stmt = select(Snooze.user_id, Snooze.first_day, Snooze.last_day)
    if user_ids is not None:
        stmt = stmt.where(Snooze.user_id.in_(list(user_ids)))
    result: dict[str, list[tuple[date, date]]] = defaultdict(list)
    for user_id, first, last in session.execute(stmt):
        result[user_id].append((first, last))
    return dict(result)


def add_snooze(session: Session, *, user_id: str, first_day: date, last_day: date) -> None:
    session.add(Snooze(user_id=user_id, first_day=first_day, last_day=last_day))


def end_snooze(session: Session, *, user_id: str, today: date) -> bool:
    """Stop any snooze covering today or later: today's drill counts again. True if there was one."""
    active = list(session.scalars(select(Snooze).where(Snooze.user_id == user_id, Snooze.last_day >= today)))
    for snooze in active:
        if snooze.first_day >= today:
            session.delete(snooze)
        else:
            snooze.last_day = today - timedelta(days=1)
    return bool(active)


def active_snooze_end(session: Session, user_id: str, today: date) -> date | None:
    stmt = select(func.max(Snooze.last_day)).where(
        Snooze.user_id == user_id, Snooze.first_day <= today, Snooze.last_day >= today
    )
    return session.scalar(stmt)


def folded_since(session: Session, day: date) -> list[str]:
    """Channels whose stored streaks already include a drill on or after `day`."""
    stmt = select(Drill.channel).where(Drill.day >= day, Drill.streak_applied).distinct()
    return list(session.scalars(stmt))


def set_private(session: Session, user_id: str, private: bool) -> None:
    stmt = _insert(session)(UserPrefs).values(user_id=user_id, private=private)
    session.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_={"private": private}))


def private_users(session: Session) -> set[str]:
    return set(session.scalars(select(UserPrefs.user_id).where(UserPrefs.private)))


def claim_digest(session: Session, *, slot: str, program: str, manager: str, now: datetime) -> bool:
    stmt = (
        _insert(session)(DigestSent)
        .values(slot=slot, program=program, manager=manager, sent_at=now)
        .on_conflict_do_nothing(index_elements=["slot", "program", "manager"])
        .returning(DigestSent.slot)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def release_digest(session: Session, *, slot: str, program: str, manager: str) -> None:
    """The DM failed: forget the claim so a later tick (within the catch-up hour) sends it."""
    session.execute(
        delete(DigestSent).where(DigestSent.slot == slot, DigestSent.program == program, DigestSent.manager == manager)
    )


def drills_between(session: Session, channel: str, first: date, last: date) -> list[Drill]:
    stmt = select(Drill).where(Drill.channel == channel, Drill.ts.is_not(None), Drill.day >= first, Drill.day <= last)
    return list(session.scalars(stmt.order_by(Drill.day, Drill.id)))


def team_ratings(session: Session, user_ids: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
    stmt = select(Rating.category, Rating.rating, func.count()).group_by(Rating.category, Rating.rating)
    if user_ids is not None:
        stmt = stmt.where(Rating.user_id.in_(list(user_ids)))
    result: dict[str, dict[str, int]] = defaultdict(dict)
    for category, rating, n in session.execute(stmt):
        result[category][rating] = int(n)
    return dict(result)


def posted_drills(session: Session, channel: str) -> list[Drill]:
    """Every drill of the channel that has a message, in drill order (a full streak replay)."""
    stmt = select(Drill).where(Drill.channel == channel, Drill.ts.is_not(None))
    return list(session.scalars(stmt.order_by(Drill.day, Drill.id)))


# -- feedback: the checklist DM claim, ticks, the opt-out ------------------------------------------------


def feedback_due(session: Session, since: datetime) -> list[tuple[Drill, str]]:
    """(closed drill, answerer) pairs revealed since `since` that have no checklist row yet."""
    stmt = (
        select(Drill, Answer.user_id)
        .join(Answer, Answer.drill_id == Drill.id)
        .outerjoin(FeedbackDM, and_(FeedbackDM.drill_id == Drill.id, FeedbackDM.user_id == Answer.user_id))
        .where(Drill.status == DrillState.CLOSED, Drill.revealed_at >= since, ~Answer.deleted)
        .where(FeedbackDM.drill_id.is_(None))
        .distinct()
        .order_by(Drill.id, Answer.user_id)
    )
    return [(drill, user) for drill, user in session.execute(stmt)]


def feedback_in_flight(session: Session) -> list[Any]:
    return list(session.scalars(select(FeedbackDM).where(FeedbackDM.status == "sending")))


def claim_feedback(session: Session, *, drill_id: int, user_id: str, owner: str, now: datetime, status: str) -> bool:
    """Record that this person's checklist for this drill is being sent (or skipped); False if it already is."""
    stmt = (
        _insert(session)(FeedbackDM)
        .values(drill_id=drill_id, user_id=user_id, status=status, claimed_by=owner if status == "sending" else None,
                claimed_at=now, attempts=1)
        .on_conflict_do_nothing(index_elements=["drill_id", "user_id"])
        .returning(FeedbackDM.drill_id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def retake_feedback(session: Session, row: Any, *, owner: str, now: datetime) -> bool:
    """Take over a checklist send whose owner's lease ran out, or retry one released after a failure."""
    same = FeedbackDM.claimed_at.is_(None) if row.claimed_at is None else FeedbackDM.claimed_at == row.claimed_at
    result = session.execute(
        update(FeedbackDM)
        .where(FeedbackDM.drill_id == row.drill_id, FeedbackDM.user_id == row.user_id, FeedbackDM.status == "sending",
               same)
        .values(claimed_by=owner, claimed_at=now, attempts=FeedbackDM.attempts + 1)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def finish_feedback(
    session: Session, *, drill_id: int, user_id: str, owner: str, channel: str, ts: str, graded: str | None,
    now: datetime,
) -> bool:
    result = session.execute(
        update(FeedbackDM)
        .where(FeedbackDM.drill_id == drill_id, FeedbackDM.user_id == user_id, FeedbackDM.claimed_by == owner,
               FeedbackDM.status == "sending")
        .values(status="sent", channel=channel, ts=ts, graded=graded, sent_at=now, claimed_by=None)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        set_dm_channel(session, user_id, channel)
        return True
    return False


def release_feedback(session: Session, *, drill_id: int, user_id: str, owner: str, now: datetime) -> None:
    session.execute(
        update(FeedbackDM)
        .where(FeedbackDM.drill_id == drill_id, FeedbackDM.user_id == user_id, FeedbackDM.claimed_by == owner)
        .values(claimed_by=None, claimed_at=now)
    )


def feedback_row(session: Session, drill_id: int, user_id: str) -> Any:
    return session.get(FeedbackDM, (drill_id, user_id))


def feedback_rows_of(session: Session, user_id: str, *, limit: int = 10) -> list[tuple[Any, Drill]]:
    stmt = (
        select(FeedbackDM, Drill)
        .join(Drill, Drill.id == FeedbackDM.drill_id)
        .where(FeedbackDM.user_id == user_id, FeedbackDM.status == "sent")
        .order_by(Drill.day.desc(), Drill.id.desc())
        .limit(limit)
    )
    return [(row, drill) for row, drill in session.execute(stmt)]


def save_ticks(session: Session, *, drill_id: int, user_id: str, covered: dict[int, bool], now: datetime) -> None:
    session.execute(delete(KeyPointTick).where(KeyPointTick.drill_id == drill_id, KeyPointTick.user_id == user_id))
    if covered:
        session.execute(
            insert(KeyPointTick),
            [
                {"drill_id": drill_id, "user_id": user_id, "key_point": index, "covered": value, "updated_at": now}
                for index, value in sorted(covered.items())
            ],
        )


def ticks_of(session: Session, drill_id: int, user_id: str) -> dict[int, bool]:
    stmt = select(KeyPointTick.key_point, KeyPointTick.covered).where(
        KeyPointTick.drill_id == drill_id, KeyPointTick.user_id == user_id
    )
    return {index: covered for index, covered in session.execute(stmt)}


def ticks_with_drills(
    session: Session, *, user_id: str | None = None, since: date | None = None, channel: str | None = None
) -> list[tuple[Drill, int, bool]]:
    """(drill, key point index, covered) for the ticks of one person, or everyone's (counts only)."""
    stmt = select(Drill, KeyPointTick.key_point, KeyPointTick.covered).join(
        Drill, Drill.id == KeyPointTick.drill_id
    )
    if user_id is not None:
        stmt = stmt.where(KeyPointTick.user_id == user_id)
    if since is not None:
        stmt = stmt.where(Drill.day >= since)
    if channel is not None:
        stmt = stmt.where(Drill.channel == channel)
    return [(drill, index, covered) for drill, index, covered in session.execute(stmt)]


def missed_question_ids(session: Session, *, user_id: str) -> list[str]:
    """The question ids (as the drills stored them) of which the person left a key point unticked."""
    stmt = (
        select(Drill.question_id)
        .join(KeyPointTick, KeyPointTick.drill_id == Drill.id)
        .where(KeyPointTick.user_id == user_id, ~KeyPointTick.covered)
        .distinct()
    )
    return list(session.scalars(stmt))


def feedback_enabled(session: Session, user_id: str) -> bool:
    value = session.scalar(select(UserPrefs.feedback).where(UserPrefs.user_id == user_id))
    return True if value is None else bool(value)


def set_feedback(session: Session, user_id: str, enabled: bool) -> None:
    stmt = _insert(session)(UserPrefs).values(user_id=user_id, private=False, feedback=enabled)
    session.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_={"feedback": enabled}))


def set_dm_channel(session: Session, user_id: str, channel: str) -> None:
    stmt = _insert(session)(UserPrefs).values(user_id=user_id, private=False, feedback=True, dm_channel=channel)
    session.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_={"dm_channel": channel}))


def dm_channel_of(session: Session, user_id: str) -> str | None:
    return session.scalar(select(UserPrefs.dm_channel).where(UserPrefs.user_id == user_id))


def answer_text(session: Session, drill_id: int, user_id: str) -> str:
    """Everything the person wrote for this drill (replies in order, or the sealed answer)."""
    stmt = (
        select(Answer.text)
        .where(Answer.drill_id == drill_id, Answer.user_id == user_id, ~Answer.deleted)
        .order_by(Answer.created_at, Answer.id)
    )
    return "\n\n".join(t for t in session.scalars(stmt) if t)


def graded_count(session: Session, drill_id: int) -> int:
    stmt = select(func.count()).where(FeedbackDM.drill_id == drill_id, FeedbackDM.graded.is_not(None))
    return int(session.scalar(stmt) or 0)
