"""The real console script, in subprocesses, against the fake Slack.

Every command is run as `python -m bot ...` with the environment a deployment would set; every run is
also checked for the bot token in its output.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain.questions import load_bank
from bot.drills import DrillService
from bot.settings import Settings
from bot.slack_api import SlackGateway, make_client
from storage import repo
from storage.db import Database
from tests.conftest import BOT_TOKEN, CHANNEL, SIGNING_SECRET, TEST_BANK
from tests.fakes.slack import FakeSlack

SHIPPED_BANK = Path(__file__).resolve().parent.parent / "questions.yaml"
NEVER = "0 0 1 1 *"
TOKEN_TAIL = BOT_TOKEN.split("-", 1)[1]  # what a partial leak would show

Env = dict[str, str]


@pytest.fixture
def cli_env(fake_slack: FakeSlack, tmp_path: Path) -> Env:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DRILL_"))}
    env.pop("DRILLBOT_DEBUG", None)
    env.update(
        SLACK_API_URL=fake_slack.url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        DRILL_CHANNEL=CHANNEL,
        DRILL_SCHEDULE=NEVER,
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
        QUESTIONS_FILE=str(TEST_BANK.resolve()),
        PYTHONUNBUFFERED="1",
    )
    return env


def cli(
    env: Env, cwd: Path, *args: str, timeout: float = 60, **overrides: str | None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot ARGS`; an override of None removes the variable."""
    run_env = dict(env)
    for key, value in overrides.items():
        if value is None:
            run_env.pop(key, None)
        else:
            run_env[key] = value
    result = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=run_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert_no_token(result.stdout + result.stderr)
    return result


def assert_no_token(output: str) -> None:
    assert BOT_TOKEN not in output
    assert TOKEN_TAIL not in output


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    return lines[0]


def check_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed `drillbot check` (warnings may come with it, one line each)."""
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), result.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, f"expected one error line, got: {result.stderr!r}"
    return errors[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the entry point --------------------------------------------------------------------------------


def test_drillbot_console_script_is_installed(cli_env, tmp_path):
    script = Path(sys.executable).parent / "drillbot"
    assert script.is_file(), f"no console script at {script}"
    assert os.access(script, os.X_OK)
    result = subprocess.run(
        [str(script), "--help"], env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for command in ("run", "post", "reveal", "check", "leaderboard"):
        assert command in result.stdout


# -- post / reveal --------------------------------------------------------------------------------


def test_post_posts_once_a_day(cli_env, tmp_path, fake_slack):
    first = cli(cli_env, tmp_path, "post")
    assert first.returncode == 0, first.stderr
    posts = fake_slack.posts(thread=False)
    assert len(posts) == 1
    assert posts[0].params["channel"] == CHANNEL
    assert "Posted" in first.stdout

    second = cli(cli_env, tmp_path, "post")
    assert second.returncode == 0, second.stderr
    assert "already posted" in second.stdout and "nothing posted" in second.stdout
    assert len(fake_slack.calls_to("chat.postMessage")) == 1, "the second run must not call Slack to post"


def test_reveal_due_reveals_in_the_thread_once(cli_env, tmp_path, fake_slack):
    posted = cli(cli_env, tmp_path, "post", DRILL_ANSWER_WINDOW="1s")
    assert posted.returncode == 0, posted.stderr
    assert len(fake_slack.posts(thread=False)) == 1
    drill_ts = fake_slack.messages[CHANNEL][0]["ts"]
    # The deadline is one second after the drill was recorded; wait until it has surely passed.
    time.sleep(1.1)

    first = cli(cli_env, tmp_path, "reveal", "--due", DRILL_ANSWER_WINDOW="1s")
    assert first.returncode == 0, first.stderr
    reveals = fake_slack.posts(thread=True)
    assert len(reveals) == 1
    assert reveals[0].params["thread_ts"] == drill_ts
    assert reveals[0].params["channel"] == CHANNEL
    assert "Revealed 1" in first.stdout

    second = cli(cli_env, tmp_path, "reveal", "--due", DRILL_ANSWER_WINDOW="1s")
    assert second.returncode == 0, second.stderr
    assert "Nothing to reveal" in second.stdout
    assert len(fake_slack.posts(thread=True)) == 1


# -- leaderboard ----------------------------------------------------------------------------------


def seed_answers(env: Env, fake_slack: FakeSlack) -> None:
    """Two drills through the real service on the CLI's database: UALICE answers both, UBOB the first."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=BOT_TOKEN,
        slack_api_url=fake_slack.url,
        drill_channel=CHANNEL,
        database_url=env["DATABASE_URL"],
        questions_file=env["QUESTIONS_FILE"],
        drill_schedule=NEVER,
        drill_answer_window="1h",
    )
    real_now = datetime.now(UTC)
    now = [real_now - timedelta(days=2)]
    db = Database(settings.database_url)
    db.upgrade()
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
        db.dispose()


def test_leaderboard_json_is_only_json(cli_env, tmp_path, fake_slack):
    seed_answers(cli_env, fake_slack)
    result = cli(cli_env, tmp_path, "leaderboard", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # the whole of stdout, nothing around it
    assert isinstance(data, list)
    for row in data:
        assert set(row) == {"user_id", "current_streak", "longest_streak", "total_answers"}
    assert data == [
        {"user_id": "UALICE", "current_streak": 2, "longest_streak": 2, "total_answers": 2},
        {"user_id": "UBOB", "current_streak": 0, "longest_streak": 1, "total_answers": 1},
    ]


def test_leaderboard_json_with_no_answers_is_an_empty_list(cli_env, tmp_path):
    result = cli(cli_env, tmp_path, "leaderboard", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_leaderboard_table_is_for_humans(cli_env, tmp_path, fake_slack):
    seed_answers(cli_env, fake_slack)
    result = cli(cli_env, tmp_path, "leaderboard", "--format", "table", COLUMNS="120")
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


def test_check_rejects_a_duplicate_question_id(cli_env, tmp_path):
    bank = write_bank(
        tmp_path / "dup.yaml",
        [
            {"id": "dup-question", **GOOD_QUESTION},
            {"id": "other-question", **GOOD_QUESTION, "title": "Another?"},
            {"id": "dup-question", **GOOD_QUESTION, "title": "Third?"},
        ],
    )
    line = check_error(cli(cli_env, tmp_path, "check", QUESTIONS_FILE=str(bank)))
    assert "dup-question" in line
    assert "duplicate" in line.lower()


def test_check_rejects_a_question_missing_a_field(cli_env, tmp_path):
    incomplete = {"id": "no-guidance-here", **GOOD_QUESTION}
    del incomplete["guidance"]
    bank = write_bank(tmp_path / "missing.yaml", [{"id": "fine-question", **GOOD_QUESTION}, incomplete])
    line = check_error(cli(cli_env, tmp_path, "check", QUESTIONS_FILE=str(bank)))
    assert "no-guidance-here" in line
    assert "guidance" in line.replace("no-guidance-here", "")


def test_check_rejects_invalid_yaml_naming_file_and_line(cli_env, tmp_path):
    bank = tmp_path / "broken.yaml"
    bank.write_text(
        'questions:\n  - id: broken-one\n    title: "an unclosed quote\n    category: caching\n  - id: [unbalanced\n',
        encoding="utf-8",
    )
    line = check_error(cli(cli_env, tmp_path, "check", QUESTIONS_FILE=str(bank)))
    assert "broken.yaml" in line
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        yaml.safe_load(bank.read_text(encoding="utf-8"))
    mark = raised.value.problem_mark or raised.value.context_mark
    assert mark is not None
    assert f"broken.yaml:{mark.line + 1}" in line, "the line YAML reports the problem on"


def test_check_requires_the_bot_token(cli_env, tmp_path):
    line = check_error(cli(cli_env, tmp_path, "check", SLACK_BOT_TOKEN=None))
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
def test_check_rejects_an_invalid_setting(cli_env, tmp_path, variable, value):
    line = check_error(cli(cli_env, tmp_path, "check", **{variable: value}))
    assert variable in line
    assert line.startswith("error:")


def test_check_accepts_the_shipped_bank(cli_env, tmp_path):
    result = cli(cli_env, tmp_path, "check", "--strict", QUESTIONS_FILE=str(SHIPPED_BANK))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    count = len(yaml.safe_load(SHIPPED_BANK.read_text(encoding="utf-8"))["questions"])
    assert f"{count} questions" in lines[0]
    assert result.stderr.strip() == ""


# -- the token never shows ------------------------------------------------------------------------


def test_token_is_not_shown_when_slack_is_unreachable(cli_env, tmp_path):
    # Verbose: debug logs of the HTTP client included; quiet output is a subset of this.
    closed = f"http://127.0.0.1:{free_port()}/api/"
    result = cli(cli_env, tmp_path, "-v", "post", SLACK_API_URL=closed)  # cli() asserts the token is absent
    assert result.returncode != 0
    assert "error:" in result.stderr


@pytest.mark.parametrize("command", [["post"], ["-v", "post"], ["run", "--http", "--host", "127.0.0.1", "--port", "0"]])
def test_token_is_not_shown_when_slack_refuses_it(cli_env, tmp_path, fake_slack, command):
    fake_slack.invalid_tokens.add(BOT_TOKEN)
    result = cli(cli_env, tmp_path, *command, SLACK_SIGNING_SECRET=SIGNING_SECRET)
    assert result.returncode != 0
    assert "invalid_auth" in result.stderr
    assert "SLACK_BOT_TOKEN" in result.stderr


def test_run_with_the_example_token_stops_at_once_naming_it_before_touching_anything(cli_env, tmp_path, fake_slack):
    (tmp_path / ".env").write_text(Path(__file__).resolve().parent.parent.joinpath(".env.example").read_text())
    env = {k: v for k, v in cli_env.items() if not k.startswith("SLACK_") and k != "DATABASE_URL"}
    result = cli(env, tmp_path, "run", "--http", "--port", "0", SLACK_API_URL=fake_slack.url)
    line = one_error_line(result)
    assert line.startswith("error: SLACK_BOT_TOKEN is still the placeholder from .env.example")
    assert fake_slack.calls == []
    assert not (tmp_path / "drills.db").exists()


def test_run_that_cannot_reach_slack_names_the_url_and_cause_before_touching_the_database(cli_env, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/api/"
    result = cli(cli_env, tmp_path, "run", "--http", "--host", "127.0.0.1", "--port", "0", SLACK_API_URL=closed)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"error: cannot reach Slack at {closed}auth.test (SLACK_API_URL): connection refused by "
        f"127.0.0.1:{closed.split(':')[2].split('/')[0]} (nothing listens there)"
    )
    assert all("retrying auth.test (connection: connection refused" in line for line in lines[:-1]), lines
    assert len(lines) <= 4
    assert "alembic" not in result.stderr and "slack_sdk" not in result.stderr
    assert not Path(cli_env["DATABASE_URL"].removeprefix("sqlite:///")).exists(), "the database was touched"


# -- run --------------------------------------------------------------------------------------------


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert process.poll() is None, "drillbot run exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return json.loads(response.read())  # type: ignore[no-any-return]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"/healthz did not answer 200 within {timeout}s")


def test_run_serves_health_reveals_a_drill_posted_elsewhere_and_stops_on_sigterm(cli_env, tmp_path, fake_slack):
    port = free_port()
    env = dict(cli_env, SLACK_SIGNING_SECRET=SIGNING_SECRET, DRILL_ANSWER_WINDOW="2s", DRILL_TICK_SECONDS="0.2")
    upgraded = cli(env, tmp_path, "db", "upgrade")  # so the start below finds nothing to migrate
    assert upgraded.returncode == 0, upgraded.stderr
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--http", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        health = wait_healthy(port, process)
        assert health["database"] == "ok"
        assert health["scheduler"] == "running"

        posted = cli(env, tmp_path, "post")
        assert posted.returncode == 0, posted.stderr
        drill_ts = fake_slack.messages[CHANNEL][0]["ts"]
        reveal = fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=10)
        assert reveal[0].params["thread_ts"] == drill_ts

        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - stopping < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    logs = out.read_text() + err.read_text()
    assert_no_token(logs)
    assert "Traceback" not in logs
    # A successful start says what runs, in a few lines; a schema check with nothing to migrate says nothing.
    assert "alembic" not in logs
    assert f"serving HTTP on 127.0.0.1:{port}" in logs
    assert "Slack workspace Fake Workspace (T0FAKE), bot user @drillbot (UBOTDRILL)" in logs
    assert f"drill channel {CHANNEL}: schedule '{NEVER}' UTC, next drill " in logs
    assert f"database sqlite:///{tmp_path / 'x.db'}" in logs
    lines = logs.splitlines()
    database = next(i for i, line in enumerate(lines) if "INFO bot: database " in line)
    assert database == 3, lines[: database + 1]  # mode, workspace and bot user, the channel, the database
    assert len(fake_slack.posts(thread=True)) == 1, "revealed exactly once"
    assert len(fake_slack.posts(thread=False)) == 1, "the running bot did not post a drill of its own"


@pytest.mark.parametrize("channel", ["#drills", "C0123456789"])
def test_run_refuses_a_channel_name_or_the_example_channel_at_once(cli_env, tmp_path, fake_slack, channel):
    result = cli(cli_env, tmp_path, "run", "--http", "--port", "0", DRILL_CHANNEL=channel)
    line = one_error_line(result)
    assert line.startswith("error: DRILL_CHANNEL ") and "About tab" in line
    assert fake_slack.calls == []
