"""The `drillbot` command line against the fake Slack.

Commands run in-process through click's CliRunner (`run_cli`), with the environment a deployment would
set; every run is checked for the bot token in its output. The installed console script and
`drillbot run` with SIGTERM run as real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

from bot.domain.questions import load_bank
from bot.drills import DrillService
from bot.settings import Settings
from bot.slack_api import SlackGateway, make_client
from storage import repo
from storage.db import Database
from tests.fakes.slack import FakeSlack
from tests.fakes.workspace import BOT_TOKEN, CHANNEL, SHIPPED_BANK, TEST_BANK, assert_no_token


def closed_port() -> int:
    """A loopback port nothing listens on (bound once to get it, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the entry point --------------------------------------------------------------------------------


@pytest.mark.subprocess
def test_drillbot_console_script_is_installed(bot_env, tmp_path):
    script = shutil.which("drillbot", path=str(Path(sys.executable).parent))
    assert script is not None, "no drillbot console script next to the interpreter"
    assert os.access(script, os.X_OK)
    result = subprocess.run([script, "--help"], env=bot_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("run", "post", "reveal", "check", "leaderboard"):
        assert command in result.stdout


# -- post / reveal --------------------------------------------------------------------------------


def test_post_posts_once_a_day(run_cli, fake_slack):
    first = run_cli("post")
    assert first.returncode == 0, first.stderr
    posts = fake_slack.posts(thread=False)
    assert len(posts) == 1
    assert posts[0].params["channel"] == CHANNEL
    assert "Posted" in first.stdout

    second = run_cli("post")
    assert second.returncode == 0, second.stderr
    assert "already posted" in second.stdout and "nothing posted" in second.stdout
    assert len(fake_slack.calls_to("chat.postMessage")) == 1, "the second run must not call Slack to post"


def test_reveal_due_reveals_in_the_thread_once(run_cli, fake_slack, make_clock):
    clock = make_clock()  # the real time, until moved
    posted = run_cli("post", clock=clock, DRILL_ANSWER_WINDOW="1h")
    assert posted.returncode == 0, posted.stderr
    assert len(fake_slack.posts(thread=False)) == 1
    drill_ts = fake_slack.drill_ts()

    early = run_cli("reveal", "--due", clock=clock)
    assert early.returncode == 0, early.stderr
    assert "Nothing to reveal" in early.stdout, "revealed before the deadline"

    clock.advance(hours=1, seconds=1)
    first = run_cli("reveal", "--due", clock=clock)
    assert first.returncode == 0, first.stderr
    reveals = fake_slack.posts(thread=True)
    assert len(reveals) == 1
    assert reveals[0].params["thread_ts"] == drill_ts
    assert reveals[0].params["channel"] == CHANNEL
    assert "Revealed 1" in first.stdout

    second = run_cli("reveal", "--due", clock=clock)
    assert second.returncode == 0, second.stderr
    assert "Nothing to reveal" in second.stdout
    assert len(fake_slack.posts(thread=True)) == 1


# -- leaderboard ----------------------------------------------------------------------------------


def seed_answers(database_url: str, fake_slack: FakeSlack) -> None:
    """Two drills through the real service on the CLI's database: UALICE answers both, UBOB the first."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=BOT_TOKEN,
        slack_api_url=fake_slack.url,
        drill_channel=CHANNEL,
        database_url=database_url,
        questions_file=str(TEST_BANK),
        drill_schedule="off",
        drill_answer_window="1h",
    )
    real_now = datetime.now(UTC)
    now = [real_now - timedelta(days=2)]
    db = Database(settings.database_url)
    service = DrillService(
        settings=settings,
        bank=load_bank(settings.questions_file),
        db=db,
        slack=SlackGateway(make_client(token=BOT_TOKEN, base_url=fake_slack.url)),
        clock=lambda: now[0],
    )
    try:
        for day, users in enumerate((["UALICE", "UBOB"], ["UALICE"])):
            now[0] = real_now - timedelta(days=2 - day)
            outcome = service.post_today()
            assert outcome.result == "posted", outcome
            for n, user in enumerate(users):
                ts = f"{(now[0] + timedelta(minutes=1 + n)).timestamp():.6f}"
                event = {
                    "type": "message",
                    "channel": CHANNEL,
                    "user": user,
                    "text": "answer",
                    "ts": ts,
                    "thread_ts": outcome.ts,
                }
                assert service.handle_message_event(event, "UBOTDRILL") == "answer recorded"
        with db.transaction() as session:
            assert len(repo.pending_streak_drills(session, CHANNEL)) == 2
    finally:
        service.close()
        db.dispose()


def test_leaderboard_json_is_only_json(run_cli, fake_slack, sqlite_url):
    seed_answers(sqlite_url, fake_slack)
    result = run_cli("leaderboard", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # the whole of stdout, nothing around it
    assert isinstance(data, list)
    for row in data:
        assert set(row) == {"user_id", "current_streak", "longest_streak", "total_answers"}
    assert data == [
        {"user_id": "UALICE", "current_streak": 2, "longest_streak": 2, "total_answers": 2},
        {"user_id": "UBOB", "current_streak": 0, "longest_streak": 1, "total_answers": 1},
    ]


def test_leaderboard_json_with_no_answers_is_an_empty_list(run_cli):
    result = run_cli("leaderboard", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_leaderboard_table_is_for_humans(run_cli, fake_slack, sqlite_url):
    seed_answers(sqlite_url, fake_slack)
    result = run_cli("leaderboard", "--format", "table", COLUMNS="120")
    assert result.returncode == 0, result.stderr
    assert "UALICE" in result.stdout and "UBOB" in result.stdout
    assert result.stdout.index("UALICE") < result.stdout.index("UBOB")
    assert "leaderboard" in result.stdout.lower()
    with pytest.raises(ValueError):
        json.loads(result.stdout)


# -- check ----------------------------------------------------------------------------------------

GOOD_QUESTION = {
    "title": "A question?",
    "category": "caching",
    "difficulty": "easy",
    "tags": ["caching-strategy", "cache-invalidation"],
    "guidance": "Some guidance.",
    "key_points": ["one", "two", "three"],
}


def write_bank(path: Path, questions: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"questions": questions}, sort_keys=False), encoding="utf-8")
    return path


def test_check_rejects_a_duplicate_question_id(run_cli, tmp_path):
    bank = write_bank(
        tmp_path / "dup.yaml",
        [
            {"id": "dup-question", **GOOD_QUESTION},
            {"id": "other-question", **GOOD_QUESTION, "title": "Another?"},
            {"id": "dup-question", **GOOD_QUESTION, "title": "Third?"},
        ],
    )
    line = run_cli("check", QUESTIONS_FILE=str(bank)).check_error()
    assert "dup-question" in line
    assert "duplicate" in line.lower()


def test_check_rejects_a_question_missing_a_field(run_cli, tmp_path):
    incomplete = {"id": "no-guidance-here", **GOOD_QUESTION}
    del incomplete["guidance"]
    bank = write_bank(tmp_path / "missing.yaml", [{"id": "fine-question", **GOOD_QUESTION}, incomplete])
    line = run_cli("check", QUESTIONS_FILE=str(bank)).check_error()
    assert "no-guidance-here" in line
    assert "guidance" in line.replace("no-guidance-here", "")


def test_check_rejects_invalid_yaml_naming_file_and_line(run_cli, tmp_path):
    bank = tmp_path / "broken.yaml"
    bank.write_text(
        'questions:\n  - id: broken-one\n    title: "an unclosed quote\n    category: caching\n  - id: [unbalanced\n',
        encoding="utf-8",
    )
    line = run_cli("check", QUESTIONS_FILE=str(bank)).check_error()
    assert "broken.yaml" in line
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        yaml.safe_load(bank.read_text(encoding="utf-8"))
    mark = raised.value.problem_mark or raised.value.context_mark
    assert mark is not None
    assert f"broken.yaml:{mark.line + 1}" in line, "the line YAML reports the problem on"


def test_check_requires_the_bot_token(run_cli):
    line = run_cli("check", SLACK_BOT_TOKEN=None).check_error()
    assert "SLACK_BOT_TOKEN" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRILL_SCHEDULE", "61 10 * * 1-5"),
        ("DRILL_SCHEDULE", "every day at ten"),
        ("DRILL_TIMEZONE", "Mars/Olympus_Mons"),
        ("DRILL_ANSWER_WINDOW", "soon"),
        ("DRILL_ANSWER_WINDOW", "0s"),
    ],
)
def test_check_rejects_an_invalid_setting(run_cli, variable, value):
    line = run_cli("check", **{variable: value}).check_error()
    assert variable in line
    assert line.startswith("error:")


def test_check_accepts_the_shipped_bank(run_cli):
    result = run_cli("check", "--strict", QUESTIONS_FILE=str(SHIPPED_BANK))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    count = len(yaml.safe_load(SHIPPED_BANK.read_text(encoding="utf-8"))["questions"])
    assert f"{count} questions" in lines[0]
    assert result.stderr.strip() == ""


def test_check_says_when_there_is_no_schedule(run_cli):
    result = run_cli("check", QUESTIONS_FILE=str(SHIPPED_BANK), DRILL_SCHEDULE="off")
    assert result.returncode == 0, result.stderr
    assert "schedule 'off'" in result.stdout and "only by `drillbot post`" in result.stdout
    assert "next slot" not in result.stdout


# -- the token never shows ------------------------------------------------------------------------


def test_token_is_not_shown_when_slack_is_unreachable(run_cli, monkeypatch):
    # The client retries a refused connection with growing pauses; here the pauses are skipped, not the
    # retries (their debug lines are part of what must not show the token).
    monkeypatch.setattr(BackoffRetryIntervalCalculator, "calculate_sleep_duration", lambda self, attempt: 0.0)
    # Verbose: debug logs of the HTTP client included; quiet output is a subset of this.
    closed = f"http://127.0.0.1:{closed_port()}/api/"
    result = run_cli("-v", "post", SLACK_API_URL=closed)  # run_cli asserts the token is absent
    assert result.returncode != 0
    assert "error:" in result.stderr
    assert "retrying" in result.stderr, "the refused connection was not retried"


@pytest.mark.parametrize("command", [["post"], ["-v", "post"], ["run", "--http", "--host", "127.0.0.1", "--port", "0"]])
def test_token_is_not_shown_when_slack_refuses_it(run_cli, fake_slack, command):
    fake_slack.invalid_tokens.add(BOT_TOKEN)
    result = run_cli(*command)
    assert result.returncode != 0
    assert "invalid_auth" in result.stderr
    assert "SLACK_BOT_TOKEN" in result.stderr


def test_run_with_the_example_token_stops_at_once_naming_it_before_touching_anything(run_cli, tmp_path, fake_slack):
    (tmp_path / ".env").write_text(Path(__file__).resolve().parent.parent.joinpath(".env.example").read_text())
    result = run_cli(
        "run", "--http", "--port", "0", SLACK_BOT_TOKEN=None, SLACK_SIGNING_SECRET=None, SLACK_APP_TOKEN=None,
        DATABASE_URL=None, SLACK_API_URL=fake_slack.url,
    )
    line = result.error_line()
    assert line.startswith("error: SLACK_BOT_TOKEN is still the placeholder from .env.example")
    assert fake_slack.calls == []
    assert not (tmp_path / "drills.db").exists()


def test_run_that_cannot_reach_slack_names_the_url_and_cause_before_touching_the_database(
    run_cli, tmp_path, monkeypatch
):
    monkeypatch.setattr(BackoffRetryIntervalCalculator, "calculate_sleep_duration", lambda self, attempt: 0.0)
    port = closed_port()
    closed = f"http://127.0.0.1:{port}/api/"
    fresh = tmp_path / "never-created.db"
    result = run_cli(
        "run", "--http", "--host", "127.0.0.1", "--port", "0", SLACK_API_URL=closed, DATABASE_URL=f"sqlite:///{fresh}"
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"error: cannot reach Slack at {closed}auth.test (SLACK_API_URL): connection refused by "
        f"127.0.0.1:{port} (nothing listens there)"
    )
    assert all("retrying auth.test (connection: connection refused" in line for line in lines[:-1]), lines
    assert len(lines) <= 4
    assert "alembic" not in result.stderr and "slack_sdk" not in result.stderr
    assert not fresh.exists(), "the database was touched"


# -- run --------------------------------------------------------------------------------------------


def test_run_serves_health_reveals_a_drill_posted_elsewhere_and_stops_on_sigterm(
    launch_run, bot_env, run_cli, fake_slack, make_clock
):
    env = bot_env()
    bot = launch_run(env=env)
    health = bot.wait_healthy()
    assert health["database"] == "ok"
    assert health["scheduler"] == "running"

    # `drillbot post` elsewhere, two seconds ago, with a one-second window: overdue for the running bot.
    two_seconds_ago = make_clock()
    two_seconds_ago.advance(seconds=-2)
    posted = run_cli("post", env=env, clock=two_seconds_ago, DRILL_ANSWER_WINDOW="1s")
    assert posted.returncode == 0, posted.stderr
    drill_ts = fake_slack.drill_ts()
    reveal = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=10)
    assert reveal[0].params["thread_ts"] == drill_ts
    bot.wait_ticks()

    code, seconds = bot.sigterm()
    assert code == 0 and seconds < 10, (code, seconds)
    logs = bot.logs()
    assert_no_token(logs)
    assert "Traceback" not in logs
    # A successful start says what runs, in a few lines; a schema check with nothing to migrate says nothing.
    assert "alembic" not in logs
    assert f"serving HTTP on 127.0.0.1:{bot.port}" in logs
    assert "Slack workspace Fake Workspace (T0FAKE), bot user @drillbot (UBOTDRILL)" in logs
    assert f"drill channel {CHANNEL}: schedule '{env['DRILL_SCHEDULE']}' UTC, next drill " in logs
    assert f"database {env['DATABASE_URL']}" in logs
    # drillbot's own start-up lines: serving HTTP, serving metrics (the launcher sets METRICS_PORT), workspace
    # and bot user, the channel, the database; a few lines, nothing else of drillbot's before them (the
    # scheduler, started first, may log its own lines in between)
    lines = [line for line in logs.splitlines() if " INFO bot" in line]
    database = next(i for i, line in enumerate(lines) if "INFO bot: database " in line)
    assert database == 4, lines[: database + 1]
    assert len(fake_slack.posts(thread=True)) == 1, "revealed exactly once"
    assert len(fake_slack.posts(thread=False)) == 1, "the running bot did not post a drill of its own"


@pytest.mark.parametrize("channel", ["#drills", "C0123456789"])
def test_run_refuses_a_channel_name_or_the_example_channel_at_once(run_cli, fake_slack, channel):
    line = run_cli("run", "--http", "--port", "0", DRILL_CHANNEL=channel).error_line()
    assert line.startswith("error: DRILL_CHANNEL ") and "About tab" in line
    assert fake_slack.calls == []
