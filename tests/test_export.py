"""`bot.export.export` (and `drillbot export` once wired) over a real history, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.domain.questions import load_bank
from bot.export import CSV_COLUMNS, export
from bot.runtime import Runtime, build_runtime
from tests.fakes.events import reply_event
from tests.fakes.slack import BOT_USER_ID
from tests.fakes.workspace import CHANNEL, TEST_BANK

TRICKY = 'Shard by tenant, "hash" it\nthen, replicate; ünïcode ✓'
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@dataclass
class History:
    runtime: Runtime
    drill_ids: list[int]
    days: list[date]
    database_url: str


def _reply(runtime: Runtime, clock: Any, drill_ts: str, user: str, text: str, after: int = 60) -> str:
    ts = f"{clock.moment.timestamp() + after:.6f}"
    outcome = runtime.service.handle_message_event(reply_event(drill_ts, user=user, ts=ts, text=text), BOT_USER_ID)
    assert outcome == "answer recorded", outcome
    return ts


@pytest.fixture
def history(make_settings, make_clock, database_url) -> Any:
    """Three drills: Monday (Alice, Bob; Carol answered then deleted), Tuesday (Alice, sealed), Wednesday
    (Alice; still open)."""
    clock = make_clock(MONDAY)
    runtime = build_runtime(make_settings(drill_schedule="off", drill_answer_window="1h"), clock=clock)
    service = runtime.service
    ids, days = [], []
    for day in range(3):
        clock.set(MONDAY + timedelta(days=day))
        outcome = service.post_today()
        assert outcome.result == "posted"
        assert outcome.drill_id is not None and outcome.ts is not None
        ids.append(outcome.drill_id)
        days.append(clock.moment.date())
        if day == 0:
            _reply(runtime, clock, outcome.ts, "UALICE", "plain answer")
            _reply(runtime, clock, outcome.ts, "UBOB", TRICKY, after=120)
            carol = _reply(runtime, clock, outcome.ts, "UCAROL", "oops, wrong thread", after=180)
            deleted_at = f"{clock.moment.timestamp() + 240:.6f}"
            withdrawn = service.handle_message_event(
                {"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "ts": deleted_at,
                 "event_ts": deleted_at, "deleted_ts": carol, "previous_message": {"ts": carol, "user": "UCAROL"}},
                BOT_USER_ID,
            )
            assert withdrawn == "answer withdrawn"
        elif day == 1:
            assert service.submit_sealed_answer(outcome.drill_id, "UALICE", "sealed thoughts") == "stored"
        else:
            _reply(runtime, clock, outcome.ts, "UALICE", "still open")
        if day < 2:
            clock.advance(hours=2)
            assert service.reveal_due() == [outcome.drill_id]
    clock.set(MONDAY + timedelta(days=2, minutes=30))  # Wednesday's drill is open
    yield History(runtime, ids, days, database_url)
    runtime.service.close()
    runtime.db.dispose()


def test_json_export_has_drills_answers_and_streaks(history):
    runtime = history.runtime
    data = json.loads(export(runtime.db, fmt="json", leaderboard=runtime.service.leaderboard))
    assert set(data) == {"drills", "answers", "streaks"}

    drills = data["drills"]
    assert [d["id"] for d in drills] == history.drill_ids
    assert [d["day"] for d in drills] == [d.isoformat() for d in history.days]
    assert [d["status"] for d in drills] == ["closed", "closed", "open"]
    assert set(drills[0]) == {"id", "channel", "day", "question_id", "question_title", "status", "ts", "deadline",
                              "revealed_at", "answer_count"}
    assert all(d["channel"] == CHANNEL and d["ts"] and d["question_id"] for d in drills)
    bank = load_bank(str(TEST_BANK))
    assert all(d["question_title"] == bank.get(d["question_id"]).title for d in drills)  # the copy each drill asked
    assert drills[0]["deadline"] == (MONDAY + timedelta(hours=1)).isoformat()
    assert drills[0]["revealed_at"] == (MONDAY + timedelta(hours=2)).isoformat()
    assert drills[2]["revealed_at"] is None
    assert [d["answer_count"] for d in drills[:2]] == [2, 1]

    answers = data["answers"]
    assert [(a["drill_id"], a["user_id"], a["source"]) for a in answers] == [
        (history.drill_ids[0], "UALICE", "thread"),
        (history.drill_ids[0], "UBOB", "thread"),
        (history.drill_ids[1], "UALICE", "modal"),
        (history.drill_ids[2], "UALICE", "thread"),
    ]  # Carol's deleted answer is not exported
    assert set(answers[0]) == {"drill_id", "channel", "user_id", "message_ts", "source", "text", "created_at",
                               "updated_at"}
    assert answers[1]["text"] == TRICKY
    assert answers[2]["text"] == "sealed thoughts"
    assert all(a["channel"] == CHANNEL and a["message_ts"] for a in answers)
    assert datetime.fromisoformat(answers[0]["created_at"]) == MONDAY

    assert data["streaks"] == [
        {"channel": CHANNEL, "user_id": "UALICE", "current_streak": 3, "longest_streak": 3, "total_answers": 3},
        {"channel": CHANNEL, "user_id": "UBOB", "current_streak": 0, "longest_streak": 1, "total_answers": 1},
    ]


def test_streaks_without_a_leaderboard_follow_the_same_rule(history):
    runtime = history.runtime
    with_service = json.loads(export(runtime.db, fmt="json", leaderboard=runtime.service.leaderboard))
    recomputed = json.loads(export(runtime.db, fmt="json", now=runtime.service.clock))
    assert recomputed == with_service


def test_since_keeps_drills_from_that_day_and_their_answers(history):
    runtime = history.runtime
    data = json.loads(export(runtime.db, fmt="json", since=history.days[1], leaderboard=runtime.service.leaderboard))
    assert [d["id"] for d in data["drills"]] == history.drill_ids[1:]
    assert [a["drill_id"] for a in data["answers"]] == history.drill_ids[1:]
    assert [s["user_id"] for s in data["streaks"]] == ["UALICE", "UBOB"]  # streaks are all-time

    rows = list(csv.DictReader(io.StringIO(export(runtime.db, fmt="csv", since=history.days[2]))))
    assert [(r["drill_id"], r["user_id"]) for r in rows] == [(str(history.drill_ids[2]), "UALICE")]
    assert export(runtime.db, fmt="csv", since=history.days[2] + timedelta(days=1)).splitlines() == [
        ",".join(CSV_COLUMNS)
    ]


def test_channel_keeps_one_channel(history):
    runtime = history.runtime
    other = json.loads(export(runtime.db, fmt="json", channel="COTHER01", leaderboard=runtime.service.leaderboard))
    assert other == {"drills": [], "answers": [], "streaks": []}
    mine = json.loads(export(runtime.db, fmt="json", channel=CHANNEL, leaderboard=runtime.service.leaderboard))
    assert mine == json.loads(export(runtime.db, fmt="json", leaderboard=runtime.service.leaderboard))


def test_csv_is_one_row_per_answer_with_its_drill(history):
    text = export(history.runtime.db, fmt="csv")
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4
    assert rows[1] == {
        "drill_id": str(history.drill_ids[0]),
        "channel": CHANNEL,
        "day": history.days[0].isoformat(),
        "question_id": rows[0]["question_id"],
        "user_id": "UBOB",
        "answered_at": MONDAY.isoformat(),
        "source": "thread",
        "text": TRICKY,  # commas, quotes and a newline survive the round trip
    }
    assert [r["source"] for r in rows] == ["thread", "thread", "modal", "thread"]
    assert [r["day"] for r in rows] == [history.days[0].isoformat()] * 2 + [d.isoformat() for d in history.days[1:]]
    assert "UCAROL" not in text


def test_an_empty_database_exports_empty_tables(make_settings):
    runtime = build_runtime(make_settings(drill_schedule="off"))
    try:
        assert json.loads(export(runtime.db, fmt="json")) == {"drills": [], "answers": [], "streaks": []}
        assert export(runtime.db, fmt="csv") == ",".join(CSV_COLUMNS) + "\n"
        with pytest.raises(ValueError, match="csv or json"):
            export(runtime.db, fmt="xml")
    finally:
        runtime.db.dispose()


def test_drillbot_export_prints_the_export(history, run_cli):
    on_history = {"DATABASE_URL": history.database_url}
    result = run_cli("export", "--format", "json", **on_history)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["id"] for d in data["drills"]] == history.drill_ids
    assert len(data["answers"]) == 4
    assert [s["user_id"] for s in data["streaks"]] == ["UALICE", "UBOB"]

    result = run_cli("export", "--format", "csv", "--since", history.days[1].isoformat(), "--channel", CHANNEL,
                     **on_history)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["user_id"] for r in rows] == ["UALICE", "UALICE"]

    bad = run_cli("export", "--format", "csv", "--since", "yesterday", **on_history)
    assert bad.returncode != 0
