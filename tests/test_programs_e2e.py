"""Several drill programs (DRILL_PROGRAMS_FILE=drills.yaml) end to end.

Two programs in two channels, with different schedules and time zones; one is restricted to the test
bank's `caching` category, and each has its own manager. The running bot (in-process, real HTTP, signed
requests, a fake Slack) is driven by an injected clock, so days pass in milliseconds. The CLI checks run
`python -m bot` in a subprocess.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from bot.domain.rotation import next_question
from storage import repo
from tests.conftest import CHANNEL, MANAGER, TEST_BANK, SlackSender, reply_event
from tests.fakes.slack import FakeSlack
from tests.test_cli import SHIPPED_BANK, cli, cli_env, one_error_line  # noqa: F401  (cli_env is a fixture)

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


class Clock:
    """A stopped clock the test sets; counts reads so a test can see the scheduler tick."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.reads = 0
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.reads += 1
            return self.now

    def set(self, now: datetime) -> None:
        with self._lock:
            self.now = now


def wait_ticks(clock: Clock, reads: int = 25, timeout: float = 10.0) -> None:
    """Let the scheduler run its jobs a few times (every job reads the clock)."""
    target = clock.reads + reads
    end = time.monotonic() + timeout
    while clock.reads < target:
        assert time.monotonic() < end, f"the scheduler did not tick ({clock.reads}/{target} clock reads)"
        time.sleep(0.02)


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
        "drill_tick_seconds": 0.05,
    }
    values.update(overrides)
    return make_settings(**values)


# -- what Slack saw / sends --------------------------------------------------------------------------------


def top_posts(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [c.params for c in fake.posts(thread=False) if c.params.get("channel") == channel]


def reveals(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [
        c.params
        for c in fake.posts(thread=True)
        if c.params.get("channel") == channel
        and (c.params.get("metadata") or {}).get("event_type") == "drillbot_reveal"
    ]


def drill_ts(fake: FakeSlack, channel: str, index: int) -> str:
    top = [m for m in fake.messages[channel] if not m.get("thread_ts")]
    return str(top[index]["ts"])


def answer(slack: SlackSender, channel: str, thread_ts: str, user: str, at: datetime) -> None:
    event = reply_event(thread_ts, user=user, ts=f"{at.timestamp():.6f}", text=f"answer by {user}", channel=channel)
    status, body = slack.event(event)
    assert status == 200, (status, body)


def command(fake: FakeSlack, slack: SlackSender, text: str, *, user: str, channel: str, name: str) -> dict[str, Any]:
    """A signed slash command sent from `channel`; returns the reply posted to its response_url."""
    url = f"{fake.response_url(name)}?reply_to={name}"
    form = {
        "token": "legacy",
        "team_id": "T0FAKE",
        "channel_id": channel,
        "user_id": user,
        "user_name": user.lower(),
        "command": "/interview-question",
        "text": text,
        "api_app_id": "A0FAKE",
        "response_url": url,
        "trigger_id": "1.2.3",
    }
    status, body = slack.raw(urlencode(form).encode(), content_type="application/x-www-form-urlencoded")
    assert status == 200 and body == b"", (status, body)

    def replied() -> list[dict[str, Any]]:
        return [c.params for c in fake.calls_to("response_url") if c.params.get("reply_to") == name]

    return fake.wait_for(replied, timeout=5)[0]


def shown(message: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in message.items() if k != "reply_to"}, ensure_ascii=False)


def leaderboard_rows(service: Any, channel: str) -> list[tuple[str, int, int, int]]:
    return [(s.user_id, s.current, s.longest, s.total) for s in service.leaderboard(channel)]


def wait_recorded(fake: FakeSlack, service: Any, channel: str, ts: str) -> None:
    """Wait until the bot has recorded the drill message's ts (a reply before that is not an answer yet)."""

    def recorded() -> bool:
        with service.db.transaction() as session:
            return repo.drill_by_ts(session, channel, ts) is not None

    fake.wait_for(recorded, timeout=10)


def wait_folded(fake: FakeSlack, service: Any, channel: str) -> None:
    """Wait until every drill of the channel is closed and folded into the stored streaks.

    The reveal is visible in Slack a moment before the bot records the close and folds the streaks; tests
    that read streaks right after a reveal wait for that to finish.
    """

    def folded() -> bool:
        with service.db.transaction() as session:
            rows = repo.drills_between(session, channel, date(2000, 1, 1), date(2100, 1, 1))
            return bool(rows) and all(d.status == "closed" and d.streak_applied for d in rows)

    fake.wait_for(folded, timeout=10)


def drills_of(service: Any, channel: str) -> list[Any]:
    with service.db.transaction() as session:
        rows = repo.drills_between(session, channel, date(2000, 1, 1), date(2100, 1, 1))
        return [(d.day, d.question_id, d.status) for d in rows]


# -- the scheduler, rotation, streaks, leaderboards --------------------------------------------------------


DAYS = 3


def test_two_programs_post_on_their_own_schedules_rotate_and_keep_separate_streaks(
    start_bot, make_settings, fake_slack, drills_yaml
):
    clock = Clock(utc(FIRST_DAY, 8, 59, 50))
    bot, slack = start_bot(settings=program_settings(make_settings, drills_yaml), clock=clock)
    service = bot.runtime.service
    assert [(p.name, p.channel) for p in service.programs] == [("backend", BACKEND), ("cache", CACHE)]

    wait_ticks(clock)
    assert fake_slack.posts() == [], "nothing is due before 10:00 Berlin / 09:30 Auckland"

    for n in range(DAYS):
        day = FIRST_DAY + timedelta(days=n)
        # 10:00:05 Berlin: the backend drill, and only that one.
        clock.set(utc(day, 9, 0, 5))
        fake_slack.wait_for(lambda n=n: len(top_posts(fake_slack, BACKEND)) == n + 1, timeout=10)
        backend_ts = drill_ts(fake_slack, BACKEND, n)
        wait_recorded(fake_slack, service, BACKEND, backend_ts)
        answer(slack, BACKEND, backend_ts, "UALICE", utc(day, 9, 10))
        if n == 0:
            answer(slack, BACKEND, backend_ts, "UCAROL", utc(day, 9, 11))
        # A reply in the cache channel that names the backend drill's thread counts for nobody.
        answer(slack, CACHE, backend_ts, "UBOB", utc(day, 9, 12))
        clock.set(utc(day, 10, 0, 10))  # past the backend deadline
        fake_slack.wait_for(lambda n=n: len(reveals(fake_slack, BACKEND)) == n + 1, timeout=10)
        if n == 0:
            wait_ticks(clock)
            assert top_posts(fake_slack, CACHE) == [], "the cache program waits for 09:30 Auckland"

        # 09:30:05 next morning in Auckland = 20:30:05 UTC today.
        clock.set(utc(day, 20, 30, 5))
        fake_slack.wait_for(lambda n=n: len(top_posts(fake_slack, CACHE)) == n + 1, timeout=10)
        cache_ts = drill_ts(fake_slack, CACHE, n)
        wait_recorded(fake_slack, service, CACHE, cache_ts)
        answer(slack, CACHE, cache_ts, "UBOB", utc(day, 20, 40))
        answer(slack, CACHE, cache_ts, "UCAROL", utc(day, 20, 41))
        clock.set(utc(day, 21, 30, 10))
        fake_slack.wait_for(lambda n=n: len(reveals(fake_slack, CACHE)) == n + 1, timeout=10)

    wait_ticks(clock)
    assert len(top_posts(fake_slack, BACKEND)) == DAYS and len(top_posts(fake_slack, CACHE)) == DAYS
    assert {c.params["channel"] for c in fake_slack.posts()} == {BACKEND, CACHE}

    # Days are local to each program: the Auckland drill posted at 20:30 UTC belongs to the next day there.
    backend = drills_of(service, BACKEND)
    cache = drills_of(service, CACHE)
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
    mine = command(fake_slack, slack, "leaderboard", user=BACKEND_MANAGER, channel=BACKEND, name="back-in-back")
    text = shown(mine)
    assert mine["response_type"] == "ephemeral"
    assert "<@UALICE>" in text and "<@UCAROL>" in text and "UBOB" not in text
    assert "current streak *3*" in text
    mine = command(fake_slack, slack, "leaderboard", user=CACHE_MANAGER, channel=CACHE, name="cache-in-cache")
    text = shown(mine)
    assert "<@UBOB>" in text and "<@UCAROL>" in text and "UALICE" not in text
    # ...and the other program's manager gets the refusal, naming nobody.
    for user, channel, name in ((CACHE_MANAGER, BACKEND, "cache-in-back"), (BACKEND_MANAGER, CACHE, "back-in-cache")):
        refusal = shown(command(fake_slack, slack, "leaderboard", user=user, channel=channel, name=name))
        assert "Sorry" in refusal and "manager" in refusal
        assert "<@" not in refusal
        for person in ("UALICE", "UBOB", "UCAROL"):
            assert person not in refusal


def seed_one_drill_each(fake: FakeSlack, service: Any, slack: SlackSender, clock: Clock) -> None:
    """One closed drill per program: UALICE answered the backend one, UBOB the cache one."""
    for channel, user, at in ((BACKEND, "UALICE", utc(FIRST_DAY, 12)), (CACHE, "UBOB", utc(FIRST_DAY, 13))):
        clock.set(at)
        outcome = service.post_today(channel)
        assert outcome.result == "posted", outcome
        answer(slack, channel, str(outcome.ts), user, at + timedelta(minutes=1))
    clock.set(utc(FIRST_DAY, 14, 30))
    service.reveal_due()  # the scheduler may be revealing them at the same moment
    wait_folded(fake, service, BACKEND)
    wait_folded(fake, service, CACHE)
    assert leaderboard_rows(service, BACKEND) == [("UALICE", 1, 1, 1)]
    assert leaderboard_rows(service, CACHE) == [("UBOB", 1, 1, 1)]


def test_leaderboard_command_outside_the_program_channels_answers_the_manager(
    start_bot, make_settings, fake_slack, drills_yaml
):
    """From a DM (no program's channel), a program manager still gets an answer, and only about their program."""
    clock = Clock(utc(FIRST_DAY, 12))
    bot, slack = start_bot(settings=program_settings(make_settings, drills_yaml), clock=clock)
    seed_one_drill_each(fake_slack, bot.runtime.service, slack, clock)

    reply = shown(command(fake_slack, slack, "leaderboard", user=BACKEND_MANAGER, channel="D0DIRECT1", name="dm"))
    assert "UBOB" not in reply, "the cache program's people are not the backend manager's business"
    assert "UALICE" in reply or "channel" in reply.lower(), reply
    refusal = shown(command(fake_slack, slack, "leaderboard", user="UNOBODY01", channel="D0DIRECT2", name="dm2"))
    assert "Sorry" in refusal and "UALICE" not in refusal and "UBOB" not in refusal


def test_home_tab_shows_a_program_manager_their_own_program(start_bot, make_settings, fake_slack, drills_yaml):
    """home.py: a program's managers see the leaderboard of *their* program on the Home tab."""
    clock = Clock(utc(FIRST_DAY, 12))
    bot, slack = start_bot(settings=program_settings(make_settings, drills_yaml), clock=clock)
    seed_one_drill_each(fake_slack, bot.runtime.service, slack, clock)

    def home_of(user: str) -> str:
        event = {
            "type": "app_home_opened",
            "user": user,
            "channel": f"D{user}",
            "tab": "home",
            "event_ts": f"{time.time():.6f}",
        }
        status, _ = slack.event(event)
        assert status == 200
        calls = fake_slack.wait_for(
            lambda: [c for c in fake_slack.calls_to("views.publish") if c.params.get("user_id") == user], timeout=5
        )
        return json.dumps(calls[-1].params["view"])

    backend_home = home_of(BACKEND_MANAGER)
    assert "Manager view" in backend_home and "UALICE" in backend_home and "UBOB" not in backend_home
    cache_home = home_of(CACHE_MANAGER)
    assert "Manager view" in cache_home, "the cache program's manager sees a manager view"
    assert "UBOB" in cache_home and "UALICE" not in cache_home


# -- the single-channel settings still work unchanged ------------------------------------------------------


def test_without_a_programs_file_the_single_channel_settings_work_unchanged(start_bot, fake_slack):
    monday = FIRST_DAY
    clock = Clock(utc(monday, 9, 59, 50))
    bot, slack = start_bot(
        drill_schedule="0 10 * * 1-5", drill_answer_window="1h", drill_tick_seconds=0.05, clock=clock
    )
    service = bot.runtime.service
    assert len(service.programs) == 1 and service.programs[0].channel == CHANNEL
    assert service.program_for().channel == CHANNEL
    wait_ticks(clock)
    assert fake_slack.posts() == []
    clock.set(utc(monday, 10, 0, 5))
    post = fake_slack.wait_for(lambda: top_posts(fake_slack, CHANNEL), timeout=10)[0]
    assert post["channel"] == CHANNEL
    wait_recorded(fake_slack, service, CHANNEL, drill_ts(fake_slack, CHANNEL, 0))
    answer(slack, CHANNEL, drill_ts(fake_slack, CHANNEL, 0), "UALICE", utc(monday, 10, 5))
    clock.set(utc(monday, 11, 0, 10))
    fake_slack.wait_for(lambda: reveals(fake_slack, CHANNEL), timeout=10)
    wait_folded(fake_slack, service, CHANNEL)
    assert leaderboard_rows(service, CHANNEL) == [("UALICE", 1, 1, 1)]
    assert service.leaderboard() == service.leaderboard(CHANNEL)
    board = shown(command(fake_slack, slack, "leaderboard", user=MANAGER, channel=CHANNEL, name="single"))
    assert "<@UALICE>" in board
    refusal = shown(command(fake_slack, slack, "leaderboard", user="UALICE", channel=CHANNEL, name="single-no"))
    assert "Sorry" in refusal and "<@" not in refusal
    wait_ticks(clock)
    assert len(top_posts(fake_slack, CHANNEL)) == 1


# -- the CLI: post --channel, check ------------------------------------------------------------------------


def test_cli_post_needs_a_channel_when_there_are_several_programs(cli_env, tmp_path, fake_slack, drills_yaml):
    env = dict(cli_env, DRILL_PROGRAMS_FILE=str(drills_yaml))
    result = cli(env, tmp_path, "post")
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("error:")
    assert BACKEND in line and CACHE in line
    assert "--channel" in line
    assert fake_slack.posts() == []

    done = cli(env, tmp_path, "post", "--channel", CACHE)
    assert done.returncode == 0, done.stderr
    assert CACHE in done.stdout and CACHING_IDS[0] in done.stdout
    posts = fake_slack.posts(thread=False)
    assert [p.params["channel"] for p in posts] == [CACHE]
    assert BANK[CACHING_IDS[0]]["title"] in json.dumps(posts[0].params["blocks"])

    again = cli(env, tmp_path, "post", "--channel", CACHE)
    assert again.returncode == 0, again.stderr
    assert "already posted" in again.stdout
    backend = cli(env, tmp_path, "post", "--channel", BACKEND)
    assert backend.returncode == 0, backend.stderr
    assert [p.params["channel"] for p in fake_slack.posts(thread=False)] == [CACHE, BACKEND]


def test_cli_post_refuses_a_channel_that_is_no_program(cli_env, tmp_path, fake_slack, drills_yaml):
    """A typo in --channel must not post a drill (from the whole bank) into some other channel."""
    env = dict(cli_env, DRILL_PROGRAMS_FILE=str(drills_yaml))
    result = cli(env, tmp_path, "post", "--channel", "CTYPO0001")
    assert fake_slack.posts() == [], "posted a drill to a channel that is in no program"
    line = one_error_line(result)
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
def test_cli_check_names_the_problem_in_drills_yaml(cli_env, tmp_path, broken, expected):
    # `check` lints the bank first; the shipped bank is clean (the small test bank is not).
    path = tmp_path / "broken-drills.yaml"
    path.write_text(broken, encoding="utf-8")
    result = cli(cli_env, tmp_path, "check", DRILL_PROGRAMS_FILE=str(path), QUESTIONS_FILE=str(SHIPPED_BANK))
    assert result.returncode == 1
    assert result.stdout == ""
    line = one_error_line(result)
    assert line.startswith("error:")
    assert "broken-drills.yaml" in line
    for part in expected:
        assert part in line, (part, line)


def test_cli_check_accepts_a_good_drills_yaml(cli_env, tmp_path, drills_yaml):
    result = cli(cli_env, tmp_path, "check", DRILL_PROGRAMS_FILE=str(drills_yaml), QUESTIONS_FILE=str(SHIPPED_BANK))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK:")
    assert "2 programs" in result.stdout
    assert f"backend in {BACKEND}" in result.stdout and f"cache in {CACHE}" in result.stdout
