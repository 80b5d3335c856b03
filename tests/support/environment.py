"""The one source of settings for every way the tests run drillbot.

`bot_settings` is the set of values a deployment would configure, pointed at the fake Slack and the
test's database. `make_settings(**overrides)` turns it into `Settings` for a bot in-process;
`bot_env(**overrides)` into the environment of a `drillbot` run (in-process through the CLI runner, or a
real process). Overrides use the field names (`drill_schedule="off"`); None removes a setting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from tests.fakes.slack import FakeSlack
from tests.fakes.workspace import BOT_TOKEN, CHANNEL, MANAGER, SIGNING_SECRET, TEST_BANK

__all__ = ["as_environment", "bot_settings"]

Env = dict[str, str]


def bot_settings(slack_api_url: str, database_url: str, **overrides: Any) -> dict[str, Any]:
    """The settings (field names) of a bot on the fake Slack at `slack_api_url` and `database_url`."""
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack_api_url,
        "drill_channel": CHANNEL,
        "drill_managers": MANAGER,
        "database_url": database_url,
        "questions_file": str(TEST_BANK),
        "drill_schedule": "0 10 * * 1-5",
        "drill_tick_seconds": 0.2,
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def as_environment(values: dict[str, Any]) -> Env:
    """The environment variables for `values`, on top of this process's environment minus drillbot's own."""
    env = {k: v for k, v in os.environ.items() if not _drillbot_variable(k)}
    env.update({key.upper(): _text(value) for key, value in values.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _drillbot_variable(name: str) -> bool:
    return name.startswith(("SLACK_", "DRILL_")) or name in ("DATABASE_URL", "QUESTIONS_FILE", "PORT", "DRILLBOT_DEBUG")


def _text(value: Any) -> str:
    if isinstance(value, frozenset | set | list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's shell settings or .env file."""
    for key in list(os.environ):
        if _drillbot_variable(key):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


# Loggers whose level drillbot's configure_logging sets (the CLI, in-process): each test starts from Python's
# default, whatever an earlier test on the same worker ran.
_CONFIGURED_LOGGERS = ("apscheduler", "uvicorn", "slack_sdk.web.base_client", "alembic.runtime.migration")


@pytest.fixture(autouse=True)
def _default_logger_levels() -> Iterator[None]:
    yield
    for name in _CONFIGURED_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.fixture
def make_settings(fake_slack: FakeSlack, database_url: str) -> Callable[..., Settings]:
    """`make_settings(**overrides)`: Settings for a bot in-process (weekdays at 10:00 UTC, a 6h window)."""

    def factory(**overrides: Any) -> Settings:
        values = {"slack_api_url": fake_slack.url, "database_url": database_url, **overrides}
        settings = bot_settings(values.pop("slack_api_url"), values.pop("database_url"), **values)
        return Settings(_env_file=None, **settings)  # type: ignore[call-arg]

    return factory


@pytest.fixture
def bot_env(fake_slack: FakeSlack, sqlite_url: str) -> Callable[..., Env]:
    """`bot_env(**overrides)`: the environment of a `drillbot` command or process.

    A migrated SQLite file of the test's own unless `database_url=` says otherwise, and no schedule
    (DRILL_SCHEDULE=off): these run on the real clock, where a real slot could come round during the test.
    """

    def factory(**overrides: Any) -> Env:
        values = {"drill_schedule": "off", "slack_api_url": fake_slack.url, "database_url": sqlite_url, **overrides}
        return as_environment(bot_settings(values.pop("slack_api_url"), values.pop("database_url"), **values))

    return factory
