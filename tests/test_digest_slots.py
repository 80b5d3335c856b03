"""The weekly digest's slot: local wall-clock time in the program's zone, catch-up in real elapsed time.

Against the recording Slack stub and a real SQLite database, with a clock the test moves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.domain.questions import load_bank
from bot.drills import DrillService
from bot.drills.digest import digest_slot
from bot.settings import Settings
from storage.db import Database
from tests.fakes.recording_slack import RecordingSlack
from tests.fakes.workspace import CHANNEL, TEST_BANK

NEW_YORK = ZoneInfo("America/New_York")
# 2026-11-01: DST ends in New York at 02:00 EDT, so 01:30 happens twice: 05:30 UTC (EDT) and 06:30 UTC (EST).
FIRST_0130 = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
SECOND_0130 = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def test_the_repeated_hour_is_one_slot() -> None:
    first = digest_slot("30 1 * * 0", NEW_YORK, FIRST_0130 + timedelta(minutes=5))
    second = digest_slot("30 1 * * 0", NEW_YORK, SECOND_0130 + timedelta(minutes=5))
    assert first == "2026-11-01T01:30"
    assert second in (None, first), "the repeated 01:30 must not be a slot of its own"


def test_catch_up_is_real_elapsed_time_across_the_change() -> None:
    # 59 real minutes after the first 01:30 (EDT) the clock reads 01:29 (EST): still within the catch-up hour.
    assert digest_slot("30 1 * * 0", NEW_YORK, FIRST_0130 + timedelta(minutes=59)) == "2026-11-01T01:30"
    assert digest_slot("30 1 * * 0", NEW_YORK, SECOND_0130 + timedelta(minutes=61)) is None
    # 02:15 EST local is 45 wall-clock minutes after 01:30 but 1 h 45 min of real time after the first one.
    assert digest_slot("0 2 * * 0", NEW_YORK, datetime(2026, 11, 1, 7, 0, tzinfo=UTC)) == "2026-11-01T02:00"


def test_the_digest_is_sent_once_when_dst_ends_in_the_programs_zone(tmp_path: Path) -> None:
    now = [FIRST_0130 + timedelta(minutes=5)]
    url = f"sqlite:///{tmp_path / 'drills.db'}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        drill_channel=CHANNEL,
        database_url=url,
        questions_file=str(TEST_BANK),
        drill_timezone="America/New_York",
        drill_digest="30 1 * * 0",
        drill_managers="UMANAGER1",
    )
    db = Database(url)
    db.upgrade()
    slack = RecordingSlack()
    try:
        service = DrillService(settings=settings, bank=load_bank(str(TEST_BANK)), db=db, slack=slack,
                               clock=lambda: now[0])
        assert service.send_digest() == 1
        now[0] = SECOND_0130 + timedelta(minutes=30)  # 02:00 EST: the repeated 01:30 is within the hour
        assert service.send_digest() == 0
        assert [s.channel for s in slack.sent] == ["UMANAGER1"]
    finally:
        db.dispose()
