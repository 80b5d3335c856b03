"""Several drill programs (DRILL_PROGRAMS_FILE=drills.yaml) end to end.

Two programs in two channels, with different schedules and time zones; one is restricted to the test
bank's `caching` category, and each has its own manager. The running bot (in-process, real HTTP, signed
requests, a fake Slack) is driven by an injected clock, so days pass in milliseconds. The CLI checks run
`drillbot` in-process.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain.rotation import next_question
from tests.fakes.slack import FakeSlack
from tests.fakes.workspace import CHANNEL, MANAGER, SHIPPED_BANK, TEST_BANK

BANK = {q["id"]: q for q in yaml.safe_load(TEST_BANK.read_text(encoding="utf-8"))["questions"]}
ALL_IDS = list(BANK)
CACHING_IDS = [qid for qid, q in BANK.items() if q["category"] == "caching"]

BACKEND = "CBACKEND1"  # every category; 10:00 Europe/Berlin (09:00 UTC in early March)
CACHE = "CCACHE001"  # caching only; 09:30 Pacific/Auckland (20:30 UTC the day before, NZDT)
BACKEND_MANAGER = "UMGRBACK1"
CACHE_MANAGER = "UMGRCACHE"
DRILLS_YAML = f"""\
programs:
  - name: backend
    channel: {BACKEND}
    schedule: "0 10 * * *"
    timezone: Europe/Berlin
    answer_window: 1h
    managers: [{BACKEND_MANAGER}]
  - name: cache
    channel: {CACHE}
    schedule: "30 9 * * *"
    timezone: Pacific/Auckland
    answer_window: 1h
    managers: [{CACHE_MANAGER}]
    categories: [caching]
"""
FIRST_DAY = date(2024, 3, 4)  # a Monday; no DST change in Berlin or Auckland for the next weeks


def utc(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


@pytest.fixture
def drills_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "drills.yaml"
    path.write_text(DRILLS_YAML, encoding="utf-8")
    return path


def program_settings(make_settings: Any, drills_yaml: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "drill_programs_file": str(drills_yaml),
        "drill_channel": None,
        "drill_managers": "",
    }
    values.update(overrides)
    return make_settings(**values)


# -- what Slack saw --------------------------------------------------------------------------------------


def top_posts(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [c.params for c in fake.posts(thread=False, channel=channel)]


def shown(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def leaderboard_rows(service: Any, channel: str) -> list[tuple[str, int, int, int]]:
    return [(s.user_id, s.current, s.longest, s.total) for s in service.leaderboard(channel)]


def drills_of(db: Any, service: Any, channel: str) -> list[tuple[date, str, str]]:
    return [(d.day, d.question_id, d.status) for d in db.drills(service, channel)]


# -- the scheduler, rotation, streaks, leaderboards --------------------------------------------------------


DAYS = 3


def test_two_programs_post_on_their_own_schedules_rotate_and_keep_separate_streaks(
    start_bot, make_settings, fake_slack, drills_yaml, make_clock, wait_ticks, ask, db
):
    clock = make_clock(utc(FIRST_DAY, 8, 59, 50))
    bot, slack = start_bot(settings=program_settings(make_settings, drills_yaml), clock=clock)
    service = bot.runtime.service
    assert [(p.name, p.channel) for p in service.programs] == [("backend", BACKEND), ("cache", CACHE)]

    wait_ticks(bot)
    assert fake_slack.channel_posts() == [], "nothing is due before 10:00 Berlin / 09:30 Auckland"

    for n in range(DAYS):
        day = FIRST_DAY + timedelta(days=n)
        # 10:00:05 Berlin: the backend drill, and only that one.
        clock.set(utc(day, 9, 0, 5))
        fake_slack.wait_for(lambda n=n: len(top_posts(fake_slack, BACKEND)) == n + 1)
        backend_ts = fake_slack.drill_ts(BACKEND, n)
        db.wait_recorded(bot, BACKEND, backend_ts)
        slack.reply(backend_ts, user="UALICE", at=utc(day, 9, 10), channel=BACKEND)
        if n == 0:
            slack.reply(backend_ts, user="UCAROL", at=utc(day, 9, 11), channel=BACKEND)
        # A reply in the cache channel that names the backend drill's thread counts for nobody.
        slack.reply(backend_ts, user="UBOB", at=utc(day, 9, 12), channel=CACHE)
        clock.set(utc(day, 10, 0, 10))  # past the backend deadline
        fake_slack.wait_for(lambda n=n: len(fake_slack.reveals(BACKEND)) == n + 1)
        if n == 0:
            wait_ticks(bot)
            assert top_posts(fake_slack, CACHE) == [], "the cache program waits for 09:30 Auckland"

        # 09:30:05 next morning in Auckland = 20:30:05 UTC today.
        clock.set(utc(day, 20, 30, 5))
        fake_slack.wait_for(lambda n=n: len(top_posts(fake_slack, CACHE)) == n + 1)
        cache_ts = fake_slack.drill_ts(CACHE, n)
        db.wait_recorded(bot, CACHE, cache_ts)
        slack.reply(cache_ts, user="UBOB", at=utc(day, 20, 40), channel=CACHE)
        slack.reply(cache_ts, user="UCAROL", at=utc(day, 20, 41), channel=CACHE)
        clock.set(utc(day, 21, 30, 10))
        fake_slack.wait_for(lambda n=n: len(fake_slack.reveals(CACHE)) == n + 1)

    db.wait_folded(bot, BACKEND)
    db.wait_folded(bot, CACHE)
    wait_ticks(bot)
    assert len(top_posts(fake_slack, BACKEND)) == DAYS and len(top_posts(fake_slack, CACHE)) == DAYS
    assert {c.params["channel"] for c in fake_slack.channel_posts()} == {BACKEND, CACHE}

    # Days are local to each program: the Auckland drill posted at 20:30 UTC belongs to the next day there.
    backend = drills_of(db, bot, BACKEND)
    cache = drills_of(db, bot, CACHE)
    assert [d for d, _, _ in backend] == [FIRST_DAY + timedelta(days=n) for n in range(DAYS)]
    assert [d for d, _, _ in cache] == [FIRST_DAY + timedelta(days=n + 1) for n in range(DAYS)]
    assert {s for _, _, s in backend + cache} == {"closed"}

    # Rotation per program: the backend draws from the whole bank with only its own history...
    used: list[str] = []
    for day, question_id, _ in backend:
        assert question_id == next_question(ALL_IDS, used, channel=BACKEND, day=day)
        used.append(question_id)
    assert sorted(used) == sorted(ALL_IDS), "three days, three different questions"
    # ...and the caching program only ever gets caching questions.
    assert [q for _, q, _ in cache] == [CACHING_IDS[0]] * DAYS
    for post in top_posts(fake_slack, CACHE):
        assert BANK[CACHING_IDS[0]]["title"] in json.dumps(post["blocks"])
        for other in set(ALL_IDS) - set(CACHING_IDS):
            assert BANK[other]["title"] not in json.dumps(post["blocks"])

    # Streaks per program: answers in one channel do not count in the other.
    assert leaderboard_rows(service, BACKEND) == [("UALICE", 3, 3, 3), ("UCAROL", 0, 1, 1)]
    assert leaderboard_rows(service, CACHE) == [("UBOB", 3, 3, 3), ("UCAROL", 3, 3, 3)]

    # Each program's manager sees their program's leaderboard from its channel...
    mine = ask(slack, "leaderboard", user=BACKEND_MANAGER, channel=BACKEND)
    text = shown(mine)
    assert mine["response_type"] == "ephemeral"
    assert "<@UALICE>" in text and "<@UCAROL>" in text and "UBOB" not in text
    assert "current streak *3*" in text
    mine = ask(slack, "leaderboard", user=CACHE_MANAGER, channel=CACHE)
    text = shown(mine)
    assert "<@UBOB>" in text and "<@UCAROL>" in text and "UALICE" not in text
    # ...and the other program's manager gets the refusal, naming nobody.
    for user, channel in ((CACHE_MANAGER, BACKEND), (BACKEND_MANAGER, CACHE)):
        refusal = shown(ask(slack, "leaderboard", user=user, channel=channel))
        assert "Sorry" in refusal and "manager" in refusal
        assert "<@" not in refusal
        for person in ("UALICE", "UBOB", "UCAROL"):
            assert person not in refusal


def seed_one_drill_each(bot: Any, slack: Any, clock: Any, db: Any) -> None:
    """One closed drill per program: UALICE answered the backend one, UBOB the cache one."""
    service = bot.runtime.service
    for channel, user, at in ((BACKEND, "UALICE", utc(FIRST_DAY, 12)), (CACHE, "UBOB", utc(FIRST_DAY, 13))):
        clock.set(at)
        outcome = service.post_today(channel)
        assert outcome.result == "posted", outcome
        slack.reply(str(outcome.ts), user=user, at=at + timedelta(minutes=1), channel=channel)
    clock.set(utc(FIRST_DAY, 14, 30))
    service.reveal_due()  # the scheduler may be revealing them at the same moment
    db.wait_folded(bot, BACKEND)
    db.wait_folded(bot, CACHE)
    assert leaderboard_rows(service, BACKEND) == [("UALICE", 1, 1, 1)]
    assert leaderboard_rows(service, CACHE) == [("UBOB", 1, 1, 1)]


def test_leaderboard_command_outside_the_program_channels_answers_the_manager(
    start_bot, make_settings, drills_yaml, make_clock, ask, db
):
    """From a DM (no program's channel), a program manager still gets an answer, and only about their program."""
    clock = make_clock(utc(FIRST_DAY, 12))
    bot, slack = start_bot(settings=program_settings(make_settings, drills_yaml), clock=clock)
    seed_one_drill_each(bot, slack, clock, db)

    reply = shown(ask(slack, "leaderboard", user=BACKEND_MANAGER, channel="D0DIRECT1"))
    assert "UBOB" not in reply, "the cache program's people are not the backend manager's business"
    assert "UALICE" in reply or "channel" in reply.lower(), reply
    refusal = shown(ask(slack, "leaderboard", user="UNOBODY01", channel="D0DIRECT2"))
    assert "Sorry" in refusal and "UALICE" not in refusal and "UBOB" not in refusal


def test_home_tab_shows_a_program_manager_their_own_program(
    start_bot, make_settings, drills_yaml, make_clock, home_of, db
):
    """home.py: a program's managers see the leaderboard of *their* program on the Home tab."""
    clock = make_clock(utc(FIRST_DAY, 12))
    bot, slack = start_bot(settings=program_settings(make_settings, drills_yaml), clock=clock)
    seed_one_drill_each(bot, slack, clock, db)

    backend_home = json.dumps(home_of(slack, BACKEND_MANAGER))
    assert "Manager view" in backend_home and "UALICE" in backend_home and "UBOB" not in backend_home
    cache_home = json.dumps(home_of(slack, CACHE_MANAGER))
    assert "Manager view" in cache_home, "the cache program's manager sees a manager view"
    assert "UBOB" in cache_home and "UALICE" not in cache_home


# -- the single-channel settings still work unchanged ------------------------------------------------------


def test_without_a_programs_file_the_single_channel_settings_work_unchanged(
    start_bot, fake_slack, make_clock, wait_ticks, ask, db
):
    monday = FIRST_DAY
    clock = make_clock(utc(monday, 9, 59, 50))
    bot, slack = start_bot(drill_schedule="0 10 * * 1-5", drill_answer_window="1h", clock=clock)
    service = bot.runtime.service
    assert len(service.programs) == 1 and service.programs[0].channel == CHANNEL
    assert service.program_for().channel == CHANNEL
    wait_ticks(bot)
    assert fake_slack.channel_posts() == []
    clock.set(utc(monday, 10, 0, 5))
    post = fake_slack.wait_for(lambda: top_posts(fake_slack, CHANNEL))[0]
    assert post["channel"] == CHANNEL
    db.wait_recorded(bot, CHANNEL, fake_slack.drill_ts(CHANNEL, 0))
    slack.reply(fake_slack.drill_ts(CHANNEL, 0), user="UALICE", at=utc(monday, 10, 5))
    clock.set(utc(monday, 11, 0, 10))
    fake_slack.wait_for(lambda: fake_slack.reveals(CHANNEL))
    db.wait_folded(bot, CHANNEL)
    assert leaderboard_rows(service, CHANNEL) == [("UALICE", 1, 1, 1)]
    assert service.leaderboard() == service.leaderboard(CHANNEL)
    board = shown(ask(slack, "leaderboard", user=MANAGER, channel=CHANNEL))
    assert "<@UALICE>" in board
    refusal = shown(ask(slack, "leaderboard", user="UALICE", channel=CHANNEL))
    assert "Sorry" in refusal and "<@" not in refusal
    wait_ticks(bot)
    assert len(top_posts(fake_slack, CHANNEL)) == 1


# -- the CLI: post --channel, check ------------------------------------------------------------------------


def test_cli_post_needs_a_channel_when_there_are_several_programs(run_cli, fake_slack, drills_yaml):
    programs = {"DRILL_PROGRAMS_FILE": str(drills_yaml)}
    result = run_cli("post", **programs)
    assert result.returncode == 1
    line = result.error_line()
    assert line.startswith("error:")
    assert BACKEND in line and CACHE in line
    assert "--channel" in line
    assert fake_slack.channel_posts() == []

    done = run_cli("post", "--channel", CACHE, **programs)
    assert done.returncode == 0, done.stderr
    assert CACHE in done.stdout and CACHING_IDS[0] in done.stdout
    posts = fake_slack.posts(thread=False)
    assert [p.params["channel"] for p in posts] == [CACHE]
    assert BANK[CACHING_IDS[0]]["title"] in json.dumps(posts[0].params["blocks"])

    again = run_cli("post", "--channel", CACHE, **programs)
    assert again.returncode == 0, again.stderr
    assert "already posted" in again.stdout
    backend = run_cli("post", "--channel", BACKEND, **programs)
    assert backend.returncode == 0, backend.stderr
    assert [p.params["channel"] for p in fake_slack.posts(thread=False)] == [CACHE, BACKEND]


def test_cli_post_refuses_a_channel_that_is_no_program(run_cli, fake_slack, drills_yaml):
    """A typo in --channel must not post a drill (from the whole bank) into some other channel."""
    result = run_cli("post", "--channel", "CTYPO0001", DRILL_PROGRAMS_FILE=str(drills_yaml))
    assert fake_slack.channel_posts() == [], "posted a drill to a channel that is in no program"
    line = result.error_line()
    assert BACKEND in line and CACHE in line


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (DRILLS_YAML.replace("categories: [caching]", "categories: [caching, kubernetes]"), ["cache", "kubernetes"]),
        (
            DRILLS_YAML.replace('schedule: "0 10 * * *"', 'schedule: "0 25 * * *"'),
            ["backend", "schedule", "0 25 * * *"],
        ),
        (DRILLS_YAML.replace(f"channel: {CACHE}", f"channel: {BACKEND}"), ["cache", "duplicate channel", BACKEND]),
    ],
    ids=["unknown-category", "bad-crontab", "duplicate-channel"],
)
def test_cli_check_names_the_problem_in_drills_yaml(run_cli, tmp_path, broken, expected):
    # `check` lints the bank first; the shipped bank is clean (the small test bank is not).
    path = tmp_path / "broken-drills.yaml"
    path.write_text(broken, encoding="utf-8")
    result = run_cli("check", DRILL_PROGRAMS_FILE=str(path), QUESTIONS_FILE=str(SHIPPED_BANK))
    assert result.returncode == 1
    assert result.stdout == ""
    line = result.error_line()
    assert line.startswith("error:")
    assert "broken-drills.yaml" in line
    for part in expected:
        assert part in line, (part, line)


def test_cli_check_accepts_a_good_drills_yaml(run_cli, drills_yaml):
    result = run_cli("check", DRILL_PROGRAMS_FILE=str(drills_yaml), QUESTIONS_FILE=str(SHIPPED_BANK))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK:")
    assert "2 programs" in result.stdout
    assert f"backend in {BACKEND}" in result.stdout and f"cache in {CACHE}" in result.stdout
