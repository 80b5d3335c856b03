"""The Slack workspace every test runs in: its tokens, drill channel, manager and question banks.

Plain constants (and one check), importable from any test module: the fakes and the `tests/support`
plugin build settings, environments and signed requests from these.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "APP_TOKEN",
    "BOT_TOKEN",
    "CHANNEL",
    "MANAGER",
    "SHIPPED_BANK",
    "SIGNING_SECRET",
    "TEST_BANK",
    "assert_no_token",
]

TESTS = Path(__file__).resolve().parent.parent
TEST_BANK = TESTS / "data" / "bank.yaml"  # three questions: small enough to reason about rotation
SHIPPED_BANK = TESTS.parent / "questions.yaml"  # the bank drillbot ships with
BOT_TOKEN = "xoxb-test-0000-secret-bot-token"
APP_TOKEN = "xapp-1-TEST-socket-token-secret"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
CHANNEL = "CDRILL001"
MANAGER = "UMANAGER1"

_TOKEN_TAIL = BOT_TOKEN.split("-", 1)[1]  # what a partial leak would show


def assert_no_token(output: str) -> None:
    """Neither the bot token nor a recognisable part of it is in `output` (logs, CLI output)."""
    assert BOT_TOKEN not in output
    assert _TOKEN_TAIL not in output
