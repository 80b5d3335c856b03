"""What a start says: the cause of a failed connection in words, and the start-up summary lines."""

from __future__ import annotations

import logging
import socket
import ssl
from datetime import date, timedelta
from types import SimpleNamespace
from urllib.error import URLError

import pytest

from bot.cli import _log_started
from bot.domain.programs import single_program
from bot.domain.schedule import Schedule, parse_timezone
from bot.slack_api import connection_problem
from storage.db import Database

URL = "https://slack.com/api/"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (URLError(socket.gaierror(-2, "Name or service not known")), "DNS lookup of slack.com failed"),
        (URLError(ConnectionRefusedError(111, "Connection refused")), "connection refused by slack.com:443"),
        (
            URLError(ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")),
            "TLS certificate of slack.com not trusted",
        ),
        (URLError(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")), "TLS handshake with slack.com failed"),
        (TimeoutError("timed out"), "no answer from slack.com within 15 s"),
        (URLError(ConnectionResetError(104, "Connection reset by peer")), "connection to slack.com:443 reset"),
    ],
)
def test_connection_problems_are_named(error, expected):
    assert expected in connection_problem(error, URL)


def test_start_summary_names_workspace_channel_schedule_next_drill_and_masks_the_database(caplog):
    schedule = Schedule(
        crontab="0 10 * * 1-5",
        tz=parse_timezone("Europe/Berlin"),
        window=timedelta(hours=6),
        skip_dates=frozenset({date(2099, 1, 1)}),
    )
    db = Database("postgresql+psycopg://drill:hunter2pw@db.internal:5432/drills")  # an engine only: never opened
    bot = SimpleNamespace(
        runtime=SimpleNamespace(
            identity={"team": "Acme", "team_id": "T0ACME", "user": "drillbot", "user_id": "U0BOT"},
            service=SimpleNamespace(programs=[single_program(channel="C0DRILLS1", schedule=schedule)]),
            db=db,
        )
    )
    with caplog.at_level(logging.INFO, logger="bot"):
        _log_started(bot)  # type: ignore[arg-type]
    db.dispose()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "Slack workspace Acme (T0ACME), bot user @drillbot (U0BOT)"
    assert lines[1].startswith("drill channel C0DRILLS1: schedule '0 10 * * 1-5' Europe/Berlin, next drill ")
    assert lines[1].endswith((" CET", " CEST")) and " 10:00 " in lines[1]
    assert lines[2] == "database postgresql+psycopg://drill:***@db.internal:5432/drills"
    assert "hunter2pw" not in caplog.text


def test_the_next_drill_skips_skip_dates():
    from datetime import UTC, datetime

    schedule = Schedule(
        crontab="0 10 * * *",
        tz=parse_timezone("UTC"),
        window=timedelta(hours=1),
        skip_dates=frozenset({date(2030, 1, 2), date(2030, 1, 3)}),
    )
    assert schedule.next_drill(datetime(2030, 1, 1, 12, tzinfo=UTC)) == datetime(2030, 1, 4, 10, tzinfo=UTC)
    assert schedule.skips(datetime(2030, 1, 2, 23, tzinfo=UTC))
    assert not schedule.skips(datetime(2030, 1, 4, 0, tzinfo=UTC))
