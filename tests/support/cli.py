"""`drillbot` commands in-process, through click's CliRunner: the same `bot.cli.main` the console script
calls, with the environment a deployment would set, in a fraction of a process start.

`run_cli(*args, env=None, clock=None, **overrides)` runs one command; `env` defaults to `bot_env()`,
overrides change single variables (`DRILL_ANSWER_WINDOW="1s"`; None removes one) and `clock` is the
"now" of the drill loop. The result has `returncode`, `stdout` and `stderr`, is checked for the bot token,
and `error_line()` asserts the one-line error a failing command must print. The root logger is restored
afterwards (the CLI configures logging as a process would).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import Context, main
from tests.fakes.workspace import assert_no_token

Env = dict[str, str]
_QUIETED = ("apscheduler", "uvicorn", "slack_sdk.web.base_client")  # levels the CLI sets; put back after


@dataclass
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The command failed with exactly one line on stderr and no traceback; returns that line."""
        assert self.returncode != 0, self
        assert "Traceback" not in self.stderr + self.stdout
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got: {self.stderr!r}"
        return lines[0]


    def check_error(self) -> str:
        """The one error line of a failed `drillbot check` (warnings may come with it, one line each)."""
        assert self.returncode == 1, self
        assert "Traceback" not in self.stderr + self.stdout
        lines = self.stderr.strip().splitlines()
        assert all(line.startswith(("error: ", "warning: ")) for line in lines), self.stderr
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1, f"expected one error line, got: {self.stderr!r}"
        return errors[0]


def _drillbot_variable(name: str) -> bool:
    return name.startswith(("SLACK_", "DRILL_")) or name in (
        "DATABASE_URL", "QUESTIONS_FILE", "PORT", "DRILLBOT_DEBUG", "COLUMNS"
    )


def invoke(env: Env, *args: str, clock: Callable[[], datetime] | None = None, **overrides: str | None) -> CliResult:
    variables: dict[str, str | None] = {k: v for k, v in env.items() if _drillbot_variable(k)}
    variables.update(overrides)
    for name in os.environ:  # a variable the environment does not name is unset, as in a fresh process
        if _drillbot_variable(name) and name not in variables:
            variables[name] = None
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, {name: logging.getLogger(name).level for name in _QUIETED})
    obj = Context(clock=clock) if clock is not None else Context()
    try:
        result = CliRunner().invoke(main, list(args), env=variables, obj=obj, catch_exceptions=False)
    finally:
        handlers, level, quieted = saved
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, value in quieted.items():
            logging.getLogger(name).setLevel(value)
    outcome = CliResult(tuple(args), result.exit_code, result.stdout, result.stderr)
    assert_no_token(outcome.stdout + outcome.stderr)
    return outcome


@pytest.fixture
def run_cli(bot_env: Callable[..., Env]) -> Callable[..., CliResult]:
    """`run_cli(*args, env=None, clock=None, **VARIABLES)`: one `drillbot` command, in-process.

    Without `env`, the command runs with `bot_env()` (a migrated SQLite file of the test's own).
    """
    default = bot_env()

    def run(*args: str, env: Env | None = None, clock: Callable[[], datetime] | None = None, **overrides: Any) -> CliResult:
        return invoke(default if env is None else env, *args, clock=clock, **overrides)

    return run
