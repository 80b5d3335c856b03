"""`drillbot check`: every problem in one run, errors vs warnings, placeholders, channel IDs, --slack.

In-process with click's CliRunner (the settings come from the environment given to `invoke` and from a
`.env` in the test's working directory); `--slack` talks to the fake Slack over real HTTP.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from bot.settings import EXAMPLE_VALUES
from tests.clirunner import invoke
from tests.conftest import BOT_TOKEN, CHANNEL, SIGNING_SECRET, TEST_BANK
from tests.fakes.slack import BOT_USER_ID, TEAM_NAME, FakeSlack

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_BANK = ROOT / "questions.yaml"
APP_TOKEN = "xapp-1-A0FAKE-0000-secret-app-token"


def good_env(**overrides: str) -> dict[str, str]:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "DRILL_CHANNEL": CHANNEL,
        "QUESTIONS_FILE": str(SHIPPED_BANK),
        "DATABASE_URL": "sqlite:///never-opened.db",
    }
    env.update(overrides)
    return env


def check(*args: str, env: dict[str, str]) -> Result:
    result = invoke("check", *args, env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for secret in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN):
        assert secret not in result.stdout + result.stderr
    return result


def lines(result: Result, level: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(f"{level}: ")]


QUESTION: dict[str, Any] = {
    "title": "How do you size a connection pool?",
    "category": "databases",
    "difficulty": "medium",
    "tags": ["connection-pooling", "performance"],
    "guidance": " ".join(["word"] * 80),
    "key_points": ["one", "two", "three"],
}


def write_bank(path: Path, questions: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"questions": questions}, sort_keys=False), encoding="utf-8")
    return path


# -- every problem, in one run -----------------------------------------------------------------------


def test_reports_every_problem_one_line_each_and_checks_the_bank_without_slack_settings(tmp_path):
    broken = write_bank(
        tmp_path / "team.yaml",
        [
            {**QUESTION, "id": "no-guidance"} | {"guidance": None},
            {**QUESTION, "id": "bad-difficulty", "title": "B?", "difficulty": "brutal"},
            {**QUESTION, "id": "fine-one", "title": "C?"},
            {**QUESTION, "id": "fine-one", "title": "D?"},
        ],
    )
    env = {"QUESTIONS_FILE": str(broken), "DRILL_TIMEZONE": "Mars/Olympus_Mons", "DRILL_ANSWER_WINDOW": "soon"}
    result = check(env=env)
    assert result.exit_code == 1
    assert result.stdout == ""
    errors = lines(result, "error")
    assert lines(result, "warning") == [
        "warning: DRILL_CHANNEL is not set: no scheduled drills, only /interview-question; set it to the channel ID "
        "(C0123...)"
    ]
    assert len(errors) + 1 == len(result.stderr.strip().splitlines())  # one line per finding, nothing else
    expected = [
        "DRILL_TIMEZONE",
        "DRILL_ANSWER_WINDOW",
        "SLACK_BOT_TOKEN is not set",
        "SLACK_SIGNING_SECRET is not set",
        "'no-guidance'",
        "'bad-difficulty'",
        "duplicate question id 'fine-one'",
    ]
    for part in expected:
        assert sum(part in line for line in errors) == 1, (part, errors)
    assert len(errors) == len(expected)
    assert any("team.yaml:" in line and "guidance" in line for line in errors)
    assert any("must be one of easy, medium, hard" in line for line in errors)


def test_bank_problems_in_several_files_are_all_reported(tmp_path):
    first = write_bank(tmp_path / "a.yaml", [{**QUESTION, "id": "shared-id"}, {**QUESTION, "id": "x", "tags": "oops"}])
    second = tmp_path / "b.yaml"
    second.write_text("questions:\n  - id: [unbalanced\n", encoding="utf-8")
    third = write_bank(tmp_path / "c.yaml", [{**QUESTION, "id": "shared-id", "title": "Again?"}])
    result = check(env=good_env(QUESTIONS_FILE=f"{first},{second},{third}"))
    assert result.exit_code == 1
    errors = lines(result, "error")
    assert len(errors) == 3, errors
    assert "a.yaml:" in errors[0] and "'x'" in errors[0] and "tags" in errors[0]
    assert "b.yaml:" in errors[1] and "invalid YAML" in errors[1]
    assert "c.yaml:" in errors[2] and "duplicate question id 'shared-id'" in errors[2] and "a.yaml:" in errors[2]


# -- errors vs warnings -----------------------------------------------------------------------------


def test_a_style_rule_is_a_warning_so_a_team_bank_with_40_word_guidance_passes(tmp_path):
    bank = write_bank(tmp_path / "team.yaml", [{**QUESTION, "id": "short-one", "guidance": " ".join(["w"] * 40)}])
    result = check(env=good_env(QUESTIONS_FILE=str(bank)))
    assert result.exit_code == 0, result.stderr
    warnings = lines(result, "warning")
    assert len(warnings) == 1 and "'short-one'" in warnings[0] and "40 words" in warnings[0]
    assert lines(result, "error") == []
    assert result.stdout.startswith("OK: 1 questions")

    strict = check("--strict", env=good_env(QUESTIONS_FILE=str(bank)))
    assert strict.exit_code == 1
    assert strict.stdout == ""
    assert lines(strict, "warning") == []
    errors = lines(strict, "error")
    assert len(errors) == 1 and "40 words" in errors[0]


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"key_points": ["only one"]}, "key_points"),
        ({"tags": ["connection-pooling", "blockchain"]}, "vocabulary"),
        ({"tags": ["one-tag-only"]}, "tags"),
    ],
)
def test_other_style_rules_are_warnings_too(tmp_path, change, rule):
    path = tmp_path / "team.yaml"
    path.write_text(
        yaml.safe_dump({"tags": ["connection-pooling", "performance", "one-tag-only"], "questions": [QUESTION | {"id": "q"} | change]}),
        encoding="utf-8",
    )
    result = check(env=good_env(QUESTIONS_FILE=str(path)))
    assert result.exit_code == 0, result.stderr
    assert any(rule in line for line in lines(result, "warning")), result.stderr
    assert check("--strict", env=good_env(QUESTIONS_FILE=str(path))).exit_code == 1


def test_the_shipped_bank_passes_strict():
    result = check("--strict", env=good_env())
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("OK: ") and "next drill" in result.stdout


# -- placeholders and IDs ---------------------------------------------------------------------------


def example_values() -> dict[str, str]:
    """KEY=value pairs of .env.example, commented-out ones included."""
    pairs = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#?\s*([A-Z_]+)=(.*)$", line.strip())
        if match:
            pairs[match.group(1)] = match.group(2).strip()
    return pairs


def test_the_placeholder_table_is_what_env_example_ships():
    shipped = example_values()
    for field, value in EXAMPLE_VALUES.items():
        assert shipped[field.upper()] == value


def test_env_example_copied_unchanged_is_an_error_per_placeholder(tmp_path):
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    result = check(env={"QUESTIONS_FILE": str(SHIPPED_BANK)})
    assert result.exit_code == 1
    errors = lines(result, "error")
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DRILL_CHANNEL"):
        assert any(line.startswith(f"error: {name} is still the placeholder from .env.example") for line in errors), errors
    assert len(errors) == 3


def test_the_app_token_placeholder_is_an_error_too(tmp_path):
    result = check(env=good_env(SLACK_APP_TOKEN=EXAMPLE_VALUES["slack_app_token"]))
    assert result.exit_code == 1
    errors = lines(result, "error")
    assert len(errors) == 1 and errors[0].startswith("error: SLACK_APP_TOKEN is still the placeholder"), errors


def test_a_missing_signing_secret_is_an_error_in_http_mode_only():
    http = check(env=good_env(SLACK_SIGNING_SECRET=""))
    assert http.exit_code == 1
    errors = lines(http, "error")
    assert len(errors) == 1 and "SLACK_SIGNING_SECRET is not set" in errors[0] and "HTTP mode" in errors[0]

    socket_mode = check(env=good_env(SLACK_SIGNING_SECRET="", SLACK_APP_TOKEN=APP_TOKEN))
    assert socket_mode.exit_code == 0, socket_mode.stderr

    forced = check("--socket", env=good_env())
    assert forced.exit_code == 1
    assert any("SLACK_APP_TOKEN is not set" in line for line in lines(forced, "error"))


def test_a_bot_token_of_the_wrong_kind_is_named():
    result = check(env=good_env(SLACK_BOT_TOKEN=APP_TOKEN))
    assert result.exit_code == 1
    assert any("SLACK_BOT_TOKEN does not start with xoxb-" in line and "SLACK_APP_TOKEN" in line for line in lines(result, "error"))


@pytest.mark.parametrize("name", ["#drills", "drills", "interview-drills"])
def test_a_channel_name_where_an_id_is_needed_says_how_to_find_the_id(name):
    result = check(env=good_env(DRILL_CHANNEL=name))
    assert result.exit_code == 1
    errors = lines(result, "error")
    assert len(errors) == 1, errors
    assert repr(name) in errors[0] and "channel name" in errors[0]
    assert "About tab" in errors[0] and "C0123" in errors[0]


def test_a_channel_name_in_drills_yaml_is_an_error_naming_the_program(tmp_path):
    drills = tmp_path / "drills.yaml"
    drills.write_text("programs:\n  - name: backend\n    channel: '#backend'\n  - name: sre\n    channel: CSRE00001\n")
    result = check(env=good_env(DRILL_PROGRAMS_FILE=str(drills)))
    assert result.exit_code == 1
    errors = lines(result, "error")
    assert len(errors) == 1 and "drills.yaml" in errors[0] and "'backend'" in errors[0] and "About tab" in errors[0]


def test_every_problem_of_drills_yaml_is_reported(tmp_path):
    drills = tmp_path / "drills.yaml"
    drills.write_text(
        "programs:\n"
        "  - name: one\n    channel: CONE00001\n    schedule: '0 25 * * *'\n"
        "  - name: two\n    channel: CTWO00001\n    categories: [kubernetes]\n"
        "  - name: three\n    channel: CTWO00001\n"
    )
    result = check(env=good_env(DRILL_PROGRAMS_FILE=str(drills)))
    assert result.exit_code == 1
    errors = lines(result, "error")
    assert len(errors) == 3, errors
    assert "'one'" in errors[0] and "schedule" in errors[0]
    assert "'two'" in errors[1] and "kubernetes" in errors[1]
    assert "'three'" in errors[2] and "duplicate channel" in errors[2]


def test_no_drill_channel_is_a_warning():
    result = check(env=good_env(DRILL_CHANNEL=""))
    assert result.exit_code == 0, result.stderr
    assert any("DRILL_CHANNEL is not set" in line for line in lines(result, "warning"))


# -- --slack ----------------------------------------------------------------------------------------


def test_slack_check_names_workspace_and_bot_and_confirms_each_channel(fake_slack: FakeSlack):
    result = check("--slack", env=good_env(SLACK_API_URL=fake_slack.url, QUESTIONS_FILE=str(TEST_BANK)))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"workspace '{TEAM_NAME}'" in out and "@drillbot" in out and BOT_USER_ID in out
    assert f"@drillbot is in {CHANNEL}" in out
    history = fake_slack.calls_to("conversations.history")
    assert len(history) == 1
    assert history[0].params["channel"] == CHANNEL and str(history[0].params["limit"]) == "1"
    assert fake_slack.calls_to("chat.postMessage") == []


def test_slack_check_says_the_bot_is_not_in_the_channel_and_how_to_fix_it(fake_slack: FakeSlack, tmp_path):
    drills = tmp_path / "drills.yaml"
    drills.write_text(
        "programs:\n  - name: backend\n    channel: CBACK0001\n  - name: sre\n    channel: CSRE00001\n"
        "  - name: new\n    channel: CNEW00001\n"
    )
    fake_slack.not_in_channel.add("CBACK0001")
    fake_slack.unknown_channels.add("CNEW00001")
    env = good_env(SLACK_API_URL=fake_slack.url, DRILL_PROGRAMS_FILE=str(drills))
    result = check("--slack", env=env)
    assert result.exit_code == 1
    errors = lines(result, "error")
    assert len(errors) == 2, errors
    assert "CBACK0001" in errors[0] and "not in" in errors[0] and "/invite @drillbot" in errors[0]
    assert "CNEW00001" in errors[1] and "not found" in errors[1]
    assert "@drillbot is in CSRE00001 (program 'sre')" in result.stdout


def test_slack_check_reports_a_refused_token(fake_slack: FakeSlack):
    fake_slack.invalid_tokens.add(BOT_TOKEN)
    result = check("--slack", env=good_env(SLACK_API_URL=fake_slack.url))
    assert result.exit_code == 1
    errors = lines(result, "error")
    assert len(errors) == 1 and "invalid_auth" in errors[0] and "SLACK_BOT_TOKEN" in errors[0]
    assert fake_slack.calls_to("conversations.history") == []


def test_slack_check_in_socket_mode_tries_the_app_token(fake_slack: FakeSlack):
    env = good_env(SLACK_API_URL=fake_slack.url, SLACK_APP_TOKEN=APP_TOKEN)
    assert "SLACK_APP_TOKEN opens a Socket Mode connection" in check("--slack", env=env).stdout
    fake_slack.invalid_tokens.add(APP_TOKEN)
    refused = check("--slack", env=env)
    assert refused.exit_code == 1
    assert any("SLACK_APP_TOKEN" in line and "invalid_auth" in line for line in lines(refused, "error"))


def test_slack_check_names_the_url_and_the_cause_when_slack_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/"
    result = check("--slack", env=good_env(SLACK_API_URL=url))
    assert result.exit_code == 1
    errors = lines(result, "error")
    assert len(errors) == 1, errors
    assert f"{url}auth.test" in errors[0] and "connection refused" in errors[0] and "SLACK_API_URL" in errors[0]
