"""People and calendars end to end: DRILL_SKIP_DATES, snooze/resume, and the leaderboard opt-out.

The running bot (in-process, real HTTP, signed requests, a fake Slack) with an injected clock: a stopped
clock the test moves from one drill to the next, while the real scheduler posts and reveals. Slash
commands are signed like Slack signs them and answered through their response_url.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from typing import Any

from bot.runtime import build_runtime
from storage import repo
from tests.conftest import CHANNEL, MANAGER, SlackSender
from tests.fakes.slack import FakeSlack
from tests.test_cli import cli, cli_env  # noqa: F401  (cli_env is a fixture)
from tests.test_programs_e2e import (
    Clock,
    answer,
    command,
    drill_ts,
    leaderboard_rows,
    reveals,
    shown,
    top_posts,
    utc,
    wait_folded,
    wait_recorded,
    wait_ticks,
)

DAILY = "0 10 * * *"
MONDAY = date(2024, 3, 4)


def start(start_bot: Any, clock: Clock, **overrides: Any) -> tuple[Any, SlackSender]:
    return start_bot(drill_schedule=DAILY, drill_answer_window="1h", drill_tick_seconds=0.05, clock=clock, **overrides)


def run_drill(fake: FakeSlack, service: Any, slack: SlackSender, clock: Clock, day: date, answerers: list[str]) -> None:
    """The scheduler posts the day's 10:00 drill, `answerers` reply, and the scheduler reveals it at 11:00."""
    count = len(top_posts(fake, CHANNEL))
    clock.set(utc(day, 10, 0, 5))
    fake.wait_for(lambda: len(top_posts(fake, CHANNEL)) == count + 1, timeout=10)
    ts = drill_ts(fake, CHANNEL, count)
    wait_recorded(fake, service, CHANNEL, ts)
    for n, user in enumerate(answerers):
        answer(slack, CHANNEL, ts, user, utc(day, 10, 5 + n))
    clock.set(utc(day, 11, 0, 10))
    fake.wait_for(lambda: len(reveals(fake, CHANNEL)) == count + 1, timeout=10)
    wait_folded(fake, service, CHANNEL)


def ask(fake: FakeSlack, slack: SlackSender, text: str, *, user: str, name: str) -> dict[str, Any]:
    return command(fake, slack, text, user=user, channel=CHANNEL, name=name)


def reply_text(message: dict[str, Any]) -> str:
    return str(message.get("text", "")) + " " + json.dumps(message.get("blocks"), ensure_ascii=False)


def home_of(fake: FakeSlack, slack: SlackSender, user: str) -> str:
    """Open the Home tab as `user` (app_home_opened) and return the published view as JSON text."""
    before = len([c for c in fake.calls_to("views.publish") if c.params.get("user_id") == user])
    event = {
        "type": "app_home_opened",
        "user": user,
        "channel": f"D{user}",
        "tab": "home",
        "event_ts": f"{time.time():.6f}",
    }
    status, body = slack.event(event)
    assert status == 200, (status, body)
    calls = fake.wait_for(
        lambda: [c for c in fake.calls_to("views.publish") if c.params.get("user_id") == user][before:], timeout=5
    )
    view = calls[-1].params["view"]
    return view if isinstance(view, str) else json.dumps(view, ensure_ascii=False)


def streak_of(service: Any, user: str) -> tuple[int, int, int] | None:
    row = next((r for r in leaderboard_rows(service, CHANNEL) if r[0] == user), None)
    return row[1:] if row else None


# -- DRILL_SKIP_DATES --------------------------------------------------------------------------------------


def test_no_drill_on_a_skip_date_and_streaks_run_across_it(start_bot, fake_slack):
    holiday = MONDAY + timedelta(days=1)
    clock = Clock(utc(MONDAY, 9, 59))
    bot, slack = start(start_bot, clock, drill_skip_dates=f"2023-12-25,{holiday.isoformat()}")
    service = bot.runtime.service

    run_drill(fake_slack, service, slack, clock, MONDAY, ["UALICE", "UBOB"])

    for moment in (utc(holiday, 10, 0, 5), utc(holiday, 10, 59, 59)):
        clock.set(moment)
        wait_ticks(clock)
    assert len(top_posts(fake_slack, CHANNEL)) == 1, "nothing is posted on a skip date"
    with service.db.transaction() as session:
        assert repo.drill_for_day(session, CHANNEL, holiday) is None

    run_drill(fake_slack, service, slack, clock, holiday + timedelta(days=1), ["UALICE"])
    assert len(top_posts(fake_slack, CHANNEL)) == 2
    assert leaderboard_rows(service, CHANNEL) == [("UALICE", 2, 2, 2), ("UBOB", 0, 1, 1)]


# -- snooze / resume ---------------------------------------------------------------------------------------


def test_snooze_keeps_the_streak_through_missed_drills_until_resume(
    start_bot, fake_slack, cli_env, tmp_path, database_url
):
    tuesday, wednesday, thursday = (MONDAY + timedelta(days=n) for n in (1, 2, 3))
    clock = Clock(utc(MONDAY, 9, 59))
    bot, slack = start(start_bot, clock)
    service = bot.runtime.service

    run_drill(fake_slack, service, slack, clock, MONDAY, ["UALICE", "UBOB"])
    assert streak_of(service, "UALICE") == streak_of(service, "UBOB") == (1, 1, 1)

    # Tuesday morning: bad dates get the usage reply and change nothing.
    clock.set(utc(tuesday, 9))
    for n, text in enumerate(
        (
            "snooze",
            "snooze until tomorrow",
            "snooze until 2024-02-30",
            "snooze until 15.03.2024",
            "snooze until 2024-03-15 2024-03-16",
        )
    ):
        usage = reply_text(ask(fake_slack, slack, text, user="UALICE", name=f"bad-{n}"))
        assert "snooze until YYYY-MM-DD" in usage, (text, usage)
    past = reply_text(ask(fake_slack, slack, "snooze until 2024-03-01", user="UALICE", name="past"))
    assert "past" in past
    assert service.snoozed_until("UALICE") is None

    snoozed = ask(fake_slack, slack, "snooze until 2024-03-15", user="UALICE", name="snooze")
    assert snoozed["response_type"] == "ephemeral"
    assert "Snoozed until 2024-03-15" in reply_text(snoozed)
    assert service.snoozed_until("UALICE") == date(2024, 3, 15)
    home = home_of(fake_slack, slack, "UALICE")
    assert "Snoozed until 2024-03-15" in home
    assert "Snoozed" not in home_of(fake_slack, slack, "UBOB")
    assert "Snoozed until 2024-03-15" in reply_text(ask(fake_slack, slack, "stats", user="UALICE", name="stats"))

    # Tuesday and Wednesday: UCAROL answers; UALICE (snoozed) and UBOB (not) miss both drills.
    run_drill(fake_slack, service, slack, clock, tuesday, ["UCAROL"])
    run_drill(fake_slack, service, slack, clock, wednesday, ["UCAROL"])
    assert streak_of(service, "UALICE") == (1, 1, 1), "a snoozed person's streak survives missed drills"
    assert streak_of(service, "UBOB") == (0, 1, 1), "everyone else's is reset"
    assert streak_of(service, "UCAROL") == (2, 2, 2)

    # The operator's JSON leaderboard (another process, same database) agrees.
    result = cli(cli_env, tmp_path, "leaderboard", "--format", "json", DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    rows = {
        r["user_id"]: (r["current_streak"], r["longest_streak"], r["total_answers"]) for r in json.loads(result.stdout)
    }
    assert rows == {"UALICE": (1, 1, 1), "UBOB": (0, 1, 1), "UCAROL": (2, 2, 2)}

    # Thursday morning UALICE resumes: the Home tab no longer shows the snooze, and a missed drill counts again.
    clock.set(utc(thursday, 9))
    assert "Welcome back" in reply_text(ask(fake_slack, slack, "resume", user="UALICE", name="resume"))
    assert service.snoozed_until("UALICE") is None
    assert "Snoozed" not in home_of(fake_slack, slack, "UALICE")
    assert "not snoozed" in reply_text(ask(fake_slack, slack, "resume", user="UALICE", name="resume-again"))
    run_drill(fake_slack, service, slack, clock, thursday, ["UBOB", "UCAROL"])
    assert streak_of(service, "UALICE") == (0, 1, 1), "after resume, a missed drill breaks the streak again"
    assert streak_of(service, "UBOB") == (1, 1, 2)
    assert streak_of(service, "UCAROL") == (3, 3, 3)


def test_resume_on_the_day_of_a_missed_drill_is_consistent(start_bot, fake_slack):
    """Resuming after today's (missed) drill closed: the stored streak and a full replay must agree.

    `end_snooze` drops the snooze for today ("today's drill counts again"), but the stored streak state
    already folded today's drill in with the snooze. Another person's later snooze replays the history
    (a streak rebuild) and must not change this person's streak.
    """
    tuesday = MONDAY + timedelta(days=1)
    clock = Clock(utc(MONDAY, 9, 59))
    bot, slack = start(start_bot, clock)
    service = bot.runtime.service
    run_drill(fake_slack, service, slack, clock, MONDAY, ["UALICE", "UBOB"])

    clock.set(utc(tuesday, 9))
    assert "Snoozed until" in reply_text(ask(fake_slack, slack, "snooze until 2024-03-20", user="UALICE", name="s"))
    run_drill(fake_slack, service, slack, clock, tuesday, ["UBOB"])  # UALICE misses it, snoozed
    assert streak_of(service, "UALICE") == (1, 1, 1)

    clock.set(utc(tuesday, 12))
    assert "Welcome back" in reply_text(ask(fake_slack, slack, "resume", user="UALICE", name="r"))
    after_resume = streak_of(service, "UALICE")
    # UBOB's snooze replays the stored streaks of channels folded today.
    clock.set(utc(tuesday, 13))
    assert "Snoozed until" in reply_text(ask(fake_slack, slack, "snooze until 2024-03-20", user="UBOB", name="s2"))
    after_replay = streak_of(service, "UALICE")
    assert after_resume == after_replay, "someone else's command changed UALICE's streak"
    assert after_resume == (0, 1, 1), "resume: today's missed drill counts again"


# -- private -----------------------------------------------------------------------------------------------


def test_private_people_drill_as_usual_but_managers_see_only_a_count(start_bot, fake_slack):
    tuesday = MONDAY + timedelta(days=1)
    clock = Clock(utc(MONDAY, 9))
    bot, slack = start(start_bot, clock)
    service = bot.runtime.service

    usage = reply_text(ask(fake_slack, slack, "private maybe", user="UALICE", name="usage"))
    assert "private on" in usage and "private off" in usage
    done = reply_text(ask(fake_slack, slack, "private on", user="UALICE", name="on"))
    assert "off the leaderboard" in done
    assert service.private_users() == {"UALICE"}

    run_drill(fake_slack, service, slack, clock, MONDAY, ["UALICE", "UBOB"])
    run_drill(fake_slack, service, slack, clock, tuesday, ["UALICE"])
    # UALICE still drills: her answers count.
    assert leaderboard_rows(service, CHANNEL) == [("UALICE", 2, 2, 2), ("UBOB", 0, 1, 1)]
    own = home_of(fake_slack, slack, "UALICE")
    assert "Current streak: 2" in own and "Manager view" not in own

    board = ask(fake_slack, slack, "leaderboard", user=MANAGER, name="board-private")
    text = shown(board)
    assert "UALICE" not in text, "a private person's user id reached the manager's leaderboard"
    assert "<@UBOB>" in text
    assert "1 people who keep their streaks private" in text
    home = home_of(fake_slack, slack, MANAGER)
    assert "Manager view" in home
    assert "UALICE" not in home, "a private person's user id reached the manager's Home tab"
    assert "<@UBOB>" in home
    assert "1 people who keep their streaks private" in home

    # Anyone else still gets the refusal.
    refusal = shown(ask(fake_slack, slack, "leaderboard", user="UBOB", name="refused"))
    assert "Sorry" in refusal and "UALICE" not in refusal

    assert "back on the leaderboard" in reply_text(ask(fake_slack, slack, "private off", user="UALICE", name="off"))
    assert service.private_users() == set()
    text = shown(ask(fake_slack, slack, "leaderboard", user=MANAGER, name="board-public"))
    assert "<@UALICE>" in text and "<@UBOB>" in text
    assert "private" not in text
    home = home_of(fake_slack, slack, MANAGER)
    assert "<@UALICE>" in home and "keep their streaks private" not in home


def test_cli_leaderboard_marks_private_people_for_the_operator(start_bot, fake_slack, cli_env, tmp_path, database_url):
    clock = Clock(utc(MONDAY, 9))
    bot, slack = start(start_bot, clock)
    service = bot.runtime.service
    ask(fake_slack, slack, "private on", user="UALICE", name="on")
    run_drill(fake_slack, service, slack, clock, MONDAY, ["UALICE"])
    result = cli(cli_env, tmp_path, "leaderboard", "--format", "table", DATABASE_URL=database_url, COLUMNS="120")
    assert result.returncode == 0, result.stderr
    assert "UALICE (private)" in result.stdout


# -- streak reads while streaks are folded -----------------------------------------------------------------


def test_leaderboard_reads_one_snapshot_while_a_fold_commits(make_settings, fake_slack, monkeypatch):
    """A leaderboard read (stored streaks + drills not folded yet) must not see half of a concurrent fold.

    The stored streaks were just replayed (repo.unfold_streaks: what a rebuild after a snooze or a late answer does), so the
    closed drill is pending again. While a leaderboard runs, the scheduler's fold commits between its
    two reads: forced here by letting the fold run (in another thread, its own transaction) just before the
    leaderboard reads the pending drills.
    """
    clock = Clock(utc(MONDAY, 10, 0, 5))
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
                folder.join(timeout=1.5)  # SQLite: the fold waits for our transaction; PostgreSQL: it commits
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
