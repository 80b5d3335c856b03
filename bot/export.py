"""`drillbot export`: the drills, answers and streaks in the database, as JSON or CSV.

JSON is one object:

    {"drills":  [{"id", "channel", "day", "question_id", "question_title", "status", "ts", "deadline",
                  "revealed_at", "answer_count"}, ...],
     "answers": [{"drill_id", "channel", "user_id", "message_ts", "source", "text", "created_at",
                  "updated_at"}, ...],
     "streaks": [{"channel", "user_id", "current_streak", "longest_streak", "total_answers"}, ...]}

CSV is one table, one row per answer, with its drill's columns:
`drill_id, channel, day, question_id, user_id, answered_at, source, text`.

Withdrawn (deleted) answers are left out. `since` keeps drills whose day is on or after it (and their
answers); `channel` keeps one channel. Streaks are all-time (a streak has no meaning from the middle of
the history): one list per channel that has a posted drill, from `leaderboard(channel)` when given (the
running service's own rule, stored state included), else recomputed from the database with the same
rule (`bot.domain.streaks`). Times are ISO 8601 in UTC; days are YYYY-MM-DD. `question_title` is the
title the drill asked (its stored copy), whatever the bank says now.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.domain.lifecycle import accepts_answer
from bot.domain.questions import Question
from bot.domain.streaks import DrillRef, Streak, compute_streaks, rank
from storage.db import Database
from storage.models import Answer, Drill, Snooze

__all__ = ["CSV_COLUMNS", "export"]

CSV_COLUMNS = ("drill_id", "channel", "day", "question_id", "user_id", "answered_at", "source", "text")
Leaderboard = Callable[[str], Sequence[Streak]]


def export(
    db: Database,
    *,
    fmt: Literal["csv", "json"] | str = "json",
    since: date | None = None,
    channel: str | None = None,
    leaderboard: Leaderboard | None = None,
    now: Callable[[], datetime] | None = None,
) -> str:
    """The export as text (JSON ends with a newline; CSV has a header row)."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"export format must be csv or json, not {fmt!r}")
    with db.transaction() as session:
        rows = _answers(session, since, channel)
        if fmt == "csv":
            return _csv(rows)
        drills = _drills(session, since, channel)
        channels = sorted({d.channel for d in _posted(session, channel)})
        computed = None if leaderboard is not None else _streaks(session, channels, (now or _utcnow)())
    # The service's leaderboard opens its own transactions: call it after ours has ended.
    if computed is None:
        assert leaderboard is not None
        computed = {c: list(leaderboard(c)) for c in channels}
    streaks = computed
    data = {
        "drills": [_drill(d) for d in drills],
        "answers": [_answer(answer, drill) for answer, drill in rows],
        "streaks": [
            {
                "channel": c,
                "user_id": s.user_id,
                "current_streak": s.current,
                "longest_streak": s.longest,
                "total_answers": s.total,
            }
            for c in channels
            for s in streaks[c]
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _drills(session: Session, since: date | None, channel: str | None) -> list[Drill]:
    stmt = select(Drill)
    if since is not None:
        stmt = stmt.where(Drill.day >= since)
    if channel is not None:
        stmt = stmt.where(Drill.channel == channel)
    return list(session.scalars(stmt.order_by(Drill.day, Drill.channel, Drill.id)))


def _answers(session: Session, since: date | None, channel: str | None) -> list[tuple[Answer, Drill]]:
    stmt = select(Answer, Drill).join(Drill, Answer.drill_id == Drill.id).where(~Answer.deleted)
    if since is not None:
        stmt = stmt.where(Drill.day >= since)
    if channel is not None:
        stmt = stmt.where(Drill.channel == channel)
    stmt = stmt.order_by(Drill.day, Drill.channel, Drill.id, Answer.created_at, Answer.id)
    return [(answer, drill) for answer, drill in session.execute(stmt)]


def _posted(session: Session, channel: str | None) -> list[Drill]:
    """Posted drills (the ones streaks count), in drill order."""
    stmt = select(Drill).where(Drill.ts.is_not(None))
    if channel is not None:
        stmt = stmt.where(Drill.channel == channel)
    return list(session.scalars(stmt.order_by(Drill.channel, Drill.day, Drill.id)))


def _streaks(session: Session, channels: Sequence[str], now: datetime) -> dict[str, list[Streak]]:
    """Every channel's streaks from the whole history, by the rule the service uses."""
    snoozes: dict[str, list[tuple[date, date]]] = defaultdict(list)
    for user_id, first, last in session.execute(select(Snooze.user_id, Snooze.first_day, Snooze.last_day)):
        snoozes[user_id].append((first, last))
    result: dict[str, list[Streak]] = {}
    for channel in channels:
        drills = _posted(session, channel)
        refs = [
            DrillRef(d.id, accepts_answer(d.status, d.deadline, now), d.day)
            for d in drills
        ]
        answered: dict[str, set[int]] = defaultdict(set)
        ids = [d.id for d in drills]
        if ids:
            stmt = select(Answer.user_id, Answer.drill_id).where(Answer.drill_id.in_(ids), ~Answer.deleted)
            for user_id, drill_id in session.execute(stmt):
                answered[user_id].add(drill_id)
        result[channel] = rank(compute_streaks(refs, answered, snoozes=snoozes).values())
    return result


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _drill(d: Drill) -> dict[str, Any]:
    return {
        "id": d.id,
        "channel": d.channel,
        "day": d.day.isoformat(),
        "question_id": d.question_id,
        "question_title": Question.from_snapshot(d.question, d.question_id).title,
        "status": str(d.status),
        "ts": d.ts,
        "deadline": _iso(d.deadline),
        "revealed_at": _iso(d.revealed_at),
        "answer_count": d.answer_count,
    }


def _answer(a: Answer, d: Drill) -> dict[str, Any]:
    return {
        "drill_id": a.drill_id,
        "channel": d.channel,
        "user_id": a.user_id,
        "message_ts": a.message_ts,
        "source": a.source,
        "text": a.text,
        "created_at": _iso(a.created_at),
        "updated_at": _iso(a.updated_at),
    }


def _csv(rows: Sequence[tuple[Answer, Drill]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for answer, drill in rows:
        writer.writerow(
            [
                drill.id,
                drill.channel,
                drill.day.isoformat(),
                drill.question_id,
                answer.user_id,
                _iso(answer.created_at),
                answer.source,
                answer.text,
            ]
        )
    return out.getvalue()
