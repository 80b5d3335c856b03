"""Everyday CLI output: `post` on a skip date, `questions` piped, `preview` links, `--help` in full.

In-process (tests/clirunner.py); `post` talks to the fake Slack over real HTTP.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import pytest

from bot.cli import main
from tests.clirunner import invoke
from tests.conftest import BOT_TOKEN, CHANNEL, SIGNING_SECRET, TEST_BANK
from tests.fakes.slack import FakeSlack

SHIPPED_BANK = Path(__file__).resolve().parent.parent / "questions.yaml"
# 25 hours apart: their local dates always differ, so a skip date of one zone is never "today" in the other.
EAST, WEST = "Pacific/Kiritimati", "Pacific/Pago_Pago"


def env_for(fake_slack: FakeSlack, tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "SLACK_API_URL": fake_slack.url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "DRILL_CHANNEL": CHANNEL,
        "DRILL_SCHEDULE": "0 0 1 1 *",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'drills.db'}",
        "QUESTIONS_FILE": str(TEST_BANK),
    }
    env.update(overrides)
    return env


def today_in(zone: str) -> str:
    return datetime.now(UTC).astimezone(ZoneInfo(zone)).date().isoformat()


# -- post on a skip date ----------------------------------------------------------------------------


def test_post_on_a_skip_date_in_the_programs_zone_posts_nothing_and_says_so(fake_slack, tmp_path):
    skip = today_in(EAST)
    result = invoke("post", env=env_for(fake_slack, tmp_path, DRILL_TIMEZONE=EAST, DRILL_SKIP_DATES=skip))
    assert result.exit_code == 0, result.stderr
    assert f"Today ({skip} in {EAST}) is a skip date" in result.stdout and "--force" in result.stdout
    assert fake_slack.posts() == []


def test_a_skip_date_of_another_zone_does_not_stop_post(fake_slack, tmp_path):
    result = invoke("post", env=env_for(fake_slack, tmp_path, DRILL_TIMEZONE=WEST, DRILL_SKIP_DATES=today_in(EAST)))
    assert result.exit_code == 0, result.stderr
    assert "Posted today's drill" in result.stdout
    assert len(fake_slack.posts(thread=False)) == 1


def test_post_force_posts_on_a_skip_date(fake_slack, tmp_path):
    env = env_for(fake_slack, tmp_path, DRILL_TIMEZONE=EAST, DRILL_SKIP_DATES=today_in(EAST))
    result = invoke("post", "--force", env=env)
    assert result.exit_code == 0, result.stderr
    assert "Posted today's drill" in result.stdout
    assert len(fake_slack.posts(thread=False)) == 1


def test_post_on_a_skip_date_of_one_program_of_drills_yaml(fake_slack, tmp_path):
    drills = tmp_path / "drills.yaml"
    drills.write_text(
        f"programs:\n  - name: east\n    channel: CEAST0001\n    timezone: {EAST}\n"
        f"  - name: west\n    channel: CWEST0001\n    timezone: {WEST}\n"
    )
    env = env_for(fake_slack, tmp_path, DRILL_PROGRAMS_FILE=str(drills), DRILL_SKIP_DATES=today_in(EAST))
    east = invoke("post", "--channel", "CEAST0001", env=env)
    assert east.exit_code == 0 and "is a skip date" in east.stdout, east.stderr
    west = invoke("post", "--channel", "CWEST0001", env=env)
    assert west.exit_code == 0 and "Posted today's drill" in west.stdout, west.stderr
    assert [c.params["channel"] for c in fake_slack.posts(thread=False)] == ["CWEST0001"]


# -- questions --------------------------------------------------------------------------------------


def test_questions_piped_prints_one_plain_line_per_question_with_whole_ids():
    result = invoke("questions", "--category", "caching", env={"QUESTIONS_FILE": str(SHIPPED_BANK)})
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    expected = json.loads(
        invoke("questions", "--category", "caching", "--format", "json", env={"QUESTIONS_FILE": str(SHIPPED_BANK)}).stdout
    )
    assert [row[0] for row in rows] == [q["id"] for q in expected]
    for row, question in zip(rows, expected, strict=True):
        assert row == [question["id"], "caching", question["difficulty"], ",".join(question["tags"]), question["title"]]
    assert not any(ch in result.stdout for ch in "┃│━")


def test_questions_table_never_wraps_an_id():
    result = invoke("questions", "--format", "table", env={"QUESTIONS_FILE": str(SHIPPED_BANK), "COLUMNS": "100"})
    assert result.exit_code == 0, result.stderr
    ids = json.loads(invoke("questions", "--format", "json", env={"QUESTIONS_FILE": str(SHIPPED_BANK)}).stdout)
    longest = max((q["id"] for q in ids), key=len)
    assert longest in result.stdout


@pytest.mark.parametrize(
    ("args", "named", "listed"),
    [
        (["--category", "kubernetes"], "unknown category 'kubernetes'", "(categories: apis, caching, databases)"),
        (["--tag", "blockchain"], "unknown tag 'blockchain'", "tags: "),
    ],
)
def test_questions_with_an_unknown_filter_lists_the_valid_ones(args, named, listed):
    result = invoke("questions", *args, env={"QUESTIONS_FILE": str(TEST_BANK)})
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0] and listed in lines[0]
    if "--tag" in args:
        assert "cache-invalidation" in lines[0]  # a tag of the test bank


# -- preview ----------------------------------------------------------------------------------------


def test_preview_puts_the_block_kit_builder_links_first():
    result = invoke("preview", env={"QUESTIONS_FILE": str(TEST_BANK)})
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data)[:2] == ["question_id", "block_kit_builder"]
    assert result.stdout.index("block-kit-builder") < result.stdout.index('"blocks"')


def test_preview_links_prints_only_the_links():
    result = invoke("preview", "--links", "idempotent-api", env={"QUESTIONS_FILE": str(TEST_BANK)})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["drill", "reveal", "home"]
    assert all(line.split(": ", 1)[1].startswith("https://app.slack.com/block-kit-builder#") for line in lines)


# -- --help -----------------------------------------------------------------------------------------


def test_help_lists_every_command_with_a_whole_sentence():
    result = invoke("--help", env={"COLUMNS": "80"})
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:")[1]
    assert "..." not in commands
    for name, command in main.commands.items():
        assert command.short_help, f"{name} has no short help"
        assert command.short_help.endswith("."), command.short_help
        assert len(command.short_help) <= 60, command.short_help
        assert f"{name:<12} {command.short_help}" in commands, (name, commands)
    group = main.commands["db"]
    assert isinstance(group, click.Group)
    sub = invoke("db", "--help", env={"COLUMNS": "80"})
    listed = sub.stdout.split("Commands:")[1]
    assert "..." not in listed and f"upgrade  {group.commands['upgrade'].short_help}" in listed
