"""People and calendars end to end: DRILL_SKIP_DATES, snooze/resume, and the leaderboard opt-out.

The running bot (in-process, real HTTP, signed requests, a fake Slack) with an injected clock: a stopped
clock the test moves from one drill to the next, while the real scheduler posts and reveals. Slash
commands are signed like Slack signs them and answered through their response_url.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.runtime import build_runtime
from storage import repo
from tests.fakes.workspace import CHANNEL, MANAGER

DAILY = "0 10 * * *"
MONDAY = date(2024, 3, 4)


def utc(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


def leaderboard_rows(service: Any, channel: str) -> list[tuple[str, int, int, int]]:
    return [(s.user_id, s.current, s.longest, s.total) for s in service.leaderboard(channel)]


def streak_of(service: Any, user: str) -> tuple[int, int, int] | None:
    row = next((r for r in leaderboard_rows(service, CHANNEL) if r[0] == user), None)
    return row[1:] if row else None


def reply_text(message: dict[str, Any]) -> str:
    return str(message.get("text", "")) + " " + json.dumps(message.get("blocks"), ensure_ascii=False)


def shown(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


@pytest.fixture
def calendar(start_bot: Any, fake_slack: Any, make_clock: Any, db: Any) -> Any:
    """A bot on a stopped clock (daily drills at 10:00 UTC, a 1h window) and a way to run a day's drill."""

    class Calendar:
        def __init__(self) -> None:
            self.clock = make_clock(utc(MONDAY, 9))
            self.bot: Any = None
            self.slack: Any = None

        def start(self, start_at: datetime, **overrides: Any) -> tuple[Any, Any]:
            """Start the bot at `start_at`; returns (bot, sender)."""
            self.clock.set(start_at)
            self.bot, self.slack = start_bot(drill_schedule=DAILY, drill_answer_window="1h", clock=self.clock, **overrides)
            return self.bot, self.slack

        @property
        def service(self) -> Any:
            return self.bot.runtime.service

        def run_drill(self, day: date, answerers: list[str]) -> None:
            """The scheduler posts the day's 10:00 drill, `answerers` reply, and it is revealed at 11:00."""
            count = len(fake_slack.top_level())
            self.clock.set(utc(day, 10, 0, 5))
            fake_slack.wait_for(lambda: len(fake_slack.top_level()) == count + 1)
            ts = fake_slack.drill_ts(CHANNEL, count)
            db.wait_recorded(self.bot, CHANNEL, ts)
            for n, user in enumerate(answerers):
                self.slack.reply(ts, user=user, at=utc(day, 10, 5 + n))
            self.clock.set(utc(day, 11, 0, 10))
            fake_slack.wait_for(lambda: len(fake_slack.reveals()) == count + 1)
            db.wait_folded(self.bot, CHANNEL)

    return Calendar()


# -- DRILL_SKIP_DATES --------------------------------------------------------------------------------------


def test_no_drill_on_a_skip_date_and_streaks_run_across_it(calendar, fake_slack, wait_ticks):
    holiday = MONDAY + timedelta(days=1)
    bot, _slack = calendar.start(utc(MONDAY, 9, 59), drill_skip_dates=f"2023-12-25,{holiday.isoformat()}")
    clock = calendar.clock
    service = calendar.service

    calendar.run_drill(MONDAY, ["UALICE", "UBOB"])

    for moment in (utc(holiday, 10, 0, 5), utc(holiday, 10, 59, 59)):
        clock.set(moment)
        wait_ticks(bot)
    assert len(fake_slack.top_level()) == 1, "nothing is posted on a skip date"
    with service.db.transaction() as session:
        assert repo.drill_for_day(session, CHANNEL, holiday) is None

    calendar.run_drill(holiday + timedelta(days=1), ["UALICE"])
    assert len(fake_slack.top_level()) == 2
    assert leaderboard_rows(service, CHANNEL) == [("UALICE", 2, 2, 2), ("UBOB", 0, 1, 1)]


# -- snooze / resume ---------------------------------------------------------------------------------------


def test_snooze_keeps_the_streak_through_missed_drills_until_resume(
    calendar, fake_slack, ask, home_of, run_cli, database_url
):
    tuesday, wednesday, thursday = (MONDAY + timedelta(days=n) for n in (1, 2, 3))
    _bot, slack = calendar.start(utc(MONDAY, 9, 59))
    clock = calendar.clock
    service = calendar.service

    calendar.run_drill(MONDAY, ["UALICE", "UBOB"])
    assert streak_of(service, "UALICE") == streak_of(service, "UBOB") == (1, 1, 1)

    # Tuesday morning: bad dates get the usage reply and change nothing.
    clock.set(utc(tuesday, 9))
    for text in (
        "snooze",
        "snooze until tomorrow",
        "snooze until 2024-02-30",
        "snooze until 15.03.2024",
        "snooze until 2024-03-15 2024-03-16",
    ):
        usage = reply_text(ask(slack, text, user="UALICE"))
        assert "snooze until YYYY-MM-DD" in usage, (text, usage)
    past = reply_text(ask(slack, "snooze until 2024-03-01", user="UALICE"))
    assert "past" in past
    assert service.snoozed_until("UALICE") is None

    snoozed = ask(slack, "snooze until 2024-03-15", user="UALICE")
    assert snoozed["response_type"] == "ephemeral"
    assert "Snoozed until 2024-03-15" in reply_text(snoozed)
    assert service.snoozed_until("UALICE") == date(2024, 3, 15)
    home = shown(home_of(slack, "UALICE"))
    assert "Snoozed until 2024-03-15" in home
    assert "Snoozed" not in shown(home_of(slack, "UBOB"))
    assert "Snoozed until 2024-03-15" in reply_text(ask(slack, "stats", user="UALICE"))

    # Tuesday and Wednesday: UCAROL answers; UALICE (snoozed) and UBOB (not) miss both drills.
    calendar.run_drill(tuesday, ["UCAROL"])
    calendar.run_drill(wednesday, ["UCAROL"])
    assert streak_of(service, "UALICE") == (1, 1, 1), "a snoozed person's streak survives missed drills"
    assert streak_of(service, "UBOB") == (0, 1, 1), "everyone else's is reset"
    assert streak_of(service, "UCAROL") == (2, 2, 2)

    # The operator's JSON leaderboard (another process, same database) agrees.
    result = run_cli("leaderboard", "--format", "json", DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    rows = {
        r["user_id"]: (r["current_streak"], r["longest_streak"], r["total_answers"]) for r in json.loads(result.stdout)
    }
    assert rows == {"UALICE": (1, 1, 1), "UBOB": (0, 1, 1), "UCAROL": (2, 2, 2)}

    # Thursday morning UALICE resumes: the Home tab no longer shows the snooze, and a missed drill counts again.
    clock.set(utc(thursday, 9))
    assert "Welcome back" in reply_text(ask(slack, "resume", user="UALICE"))
    assert service.snoozed_until("UALICE") is None
    assert "Snoozed" not in shown(home_of(slack, "UALICE"))
    assert "not snoozed" in reply_text(ask(slack, "resume", user="UALICE"))
    calendar.run_drill(thursday, ["UBOB", "UCAROL"])
    assert streak_of(service, "UALICE") == (0, 1, 1), "after resume, a missed drill breaks the streak again"
    assert streak_of(service, "UBOB") == (1, 1, 2)
    assert streak_of(service, "UCAROL") == (3, 3, 3)


def test_resume_on_the_day_of_a_missed_drill_is_consistent(calendar, ask):
    """Resuming after today's (missed) drill closed: the stored streak and a full replay must agree.

    `end_snooze` drops the snooze for today ("today's drill counts again"), but the stored streak state
    already folded today's drill in with the snooze. Another person's later snooze replays the history
    (a streak rebuild) and must not change this person's streak.
    """
    tuesday = MONDAY + timedelta(days=1)
    _bot, slack = calendar.start(utc(MONDAY, 9, 59))
    clock = calendar.clock
    service = calendar.service
    calendar.run_drill(MONDAY, ["UALICE", "UBOB"])

    clock.set(utc(tuesday, 9))
    assert "Snoozed until" in reply_text(ask(slack, "snooze until 2024-03-20", user="UALICE"))
    calendar.run_drill(tuesday, ["UBOB"])  # UALICE misses it, snoozed
    assert streak_of(service, "UALICE") == (1, 1, 1)

    clock.set(utc(tuesday, 12))
    assert "Welcome back" in reply_text(ask(slack, "resume", user="UALICE"))
    after_resume = streak_of(service, "UALICE")
    # UBOB's snooze replays the stored streaks of channels folded today.
    clock.set(utc(tuesday, 13))
    assert "Snoozed until" in reply_text(ask(slack, "snooze until 2024-03-20", user="UBOB"))
    after_replay = streak_of(service, "UALICE")
    assert after_resume == after_replay, "someone else's command changed UALICE's streak"
    assert after_resume == (0, 1, 1), "resume: today's missed drill counts again"


# -- private -----------------------------------------------------------------------------------------------


def test_private_people_drill_as_usual_but_managers_see_only_a_count(calendar, ask, home_of):
    tuesday = MONDAY + timedelta(days=1)
    _bot, slack = calendar.start(utc(MONDAY, 9))
    service = calendar.service

    usage = reply_text(ask(slack, "private maybe", user="UALICE"))
    assert "private on" in usage and "private off" in usage
    done = reply_text(ask(slack, "private on", user="UALICE"))
    assert "off the leaderboard" in done
    assert service.private_users() == {"UALICE"}

    calendar.run_drill(MONDAY, ["UALICE", "UBOB"])
    calendar.run_drill(tuesday, ["UALICE"])
    # UALICE still drills: her answers count.
    assert leaderboard_rows(service, CHANNEL) == [("UALICE", 2, 2, 2), ("UBOB", 0, 1, 1)]
    own = shown(home_of(slack, "UALICE"))
    assert "Current streak: 2" in own and "Manager view" not in own

    board = ask(slack, "leaderboard", user=MANAGER)
    text = shown(board)
    assert "UALICE" not in text, "a private person's user id reached the manager's leaderboard"
    assert "<@UBOB>" in text
    assert "1 people who keep their streaks private" in text
    home = shown(home_of(slack, MANAGER))
    assert "Manager view" in home
    assert "UALICE" not in home, "a private person's user id reached the manager's Home tab"
    assert "<@UBOB>" in home
    assert "1 people who keep their streaks private" in home

    # Anyone else still gets the refusal.
    refusal = shown(ask(slack, "leaderboard", user="UBOB"))
    assert "Sorry" in refusal and "UALICE" not in refusal

    assert "back on the leaderboard" in reply_text(ask(slack, "private off", user="UALICE"))
    assert service.private_users() == set()
    text = shown(ask(slack, "leaderboard", user=MANAGER))
    assert "<@UALICE>" in text and "<@UBOB>" in text
    assert "private" not in text
    home = shown(home_of(slack, MANAGER))
    assert "<@UALICE>" in home and "keep their streaks private" not in home


def test_cli_leaderboard_marks_private_people_for_the_operator(calendar, ask, run_cli, database_url):
    _bot, slack = calendar.start(utc(MONDAY, 9))
    ask(slack, "private on", user="UALICE")
    calendar.run_drill(MONDAY, ["UALICE"])
    result = run_cli("leaderboard", "--format", "table", DATABASE_URL=database_url, COLUMNS="120")
    assert result.returncode == 0, result.stderr
    assert "UALICE (private)" in result.stdout


# -- streak reads while streaks are folded -----------------------------------------------------------------


def test_leaderboard_reads_one_snapshot_while_a_fold_commits(make_settings, make_clock, monkeypatch):
    """A leaderboard read (stored streaks + drills not folded yet) must not see half of a concurrent fold.

    The stored streaks were just replayed (repo.unfold_streaks: what a rebuild after a snooze or a late answer does), so the
    closed drill is pending again. While a leaderboard runs, the scheduler's fold commits between its
    two reads: forced here by letting the fold run (in another thread, its own transaction) just before the
    leaderboard reads the pending drills.
    """
    clock = make_clock(utc(MONDAY, 10, 0, 5))
    runtime = build_runtime(make_settings(drill_schedule=DAILY, drill_answer_window="1h"), clock=clock)
    service = runtime.service
    try:
        outcome = service.post_today()
        assert outcome.result == "posted", outcome
        event = {
            "type": "message",
            "channel": CHANNEL,
            "user": "UALICE",
            "text": "answer",
            "ts": f"{utc(MONDAY, 10, 5).timestamp():.6f}",
            "thread_ts": outcome.ts,
        }
        assert service.handle_message_event(event, "UBOTDRILL") == "answer recorded"
        clock.set(utc(MONDAY, 11, 0, 10))
        assert service.reveal_due() == [outcome.drill_id]
        with service.db.transaction() as session:
            repo.unfold_streaks(session, CHANNEL)
        assert leaderboard_rows(service, CHANNEL) == [("UALICE", 1, 1, 1)]

        real_stored, real_pending = repo.streak_states, repo.pending_streak_drills
        folder = threading.Thread(target=service.fold_streaks, args=(CHANNEL,), name="folder")
        state = {"stored_read": False, "fired": False}

        def stored(session: Any, channel: str) -> Any:
            if threading.current_thread() is not folder:
                state["stored_read"] = True
            return real_stored(session, channel)

        def pending_after_a_fold(session: Any, channel: str) -> Any:
            # Right after the leaderboard read the stored streaks, in the same transaction.
            if threading.current_thread() is not folder and state["stored_read"] and not state["fired"]:
                state["fired"] = True
                folder.start()
                if service.db.dialect == "postgresql":  # it commits while the leaderboard's snapshot is open
                    folder.join(timeout=10)
                # SQLite: the fold waits for the leaderboard's transaction (one writer at a time)
            return real_pending(session, channel)

        monkeypatch.setattr(repo, "streak_states", stored)
        monkeypatch.setattr(repo, "pending_streak_drills", pending_after_a_fold)
        during = leaderboard_rows(service, CHANNEL)
        folder.join(timeout=10)
        assert not folder.is_alive()
        monkeypatch.setattr(repo, "streak_states", real_stored)
        monkeypatch.setattr(repo, "pending_streak_drills", real_pending)
        assert state["fired"], "the leaderboard no longer reads stored streaks, then pending drills"
        assert leaderboard_rows(service, CHANNEL) == [("UALICE", 1, 1, 1)], "after the fold"
        assert during == [("UALICE", 1, 1, 1)], (
            "the leaderboard saw the stored streaks before a fold and the drills after it"
        )
    finally:
        service.close()
        runtime.db.dispose()
