"""Running the `drillbot` CLI in-process with click's CliRunner, leaving the process's logging as it was.

The CLI points the root logger at the stderr it sees, which under CliRunner is a capture buffer closed
after the call; later tests must not log into it, so `invoke` restores the handlers and level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from click.testing import CliRunner, Result

from bot.cli import main

__all__ = ["invoke"]

_QUIETED = ("apscheduler", "uvicorn", "slack_sdk.web.base_client")  # levels the CLI sets


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in _QUIETED}
    try:
        return CliRunner().invoke(main, list(args), env=env)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, saved in quieted.items():
            logging.getLogger(name).setLevel(saved)
