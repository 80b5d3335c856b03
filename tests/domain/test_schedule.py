"""bot/domain/schedule.py: durations, time zones, crontabs and when a day's drill is due."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.domain.schedule import OFF, Schedule, parse_crontab, parse_schedule, parse_timezone, parse_window

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(crontab: str = "0 10 * * 1-5", tz: str = "UTC", window: str = "6h") -> Schedule:
    return Schedule(crontab=parse_crontab(crontab), tz=parse_timezone(tz), window=parse_window(window))


# -- parse_window ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        (" 2H ", timedelta(hours=2)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_window_accepts_units_and_sums(text: str, expected: timedelta) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "6x", "6", "h", "-1h", "1.5h", "6h6x", "six hours"])
def test_parse_window_rejects_non_durations_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_window(text)
    message = str(info.value)
    assert repr(text) in message  # names what was given
    assert "e.g." in message and "30m" in message and "6h" in message  # and shows what to write
    assert "\n" not in message


@pytest.mark.parametrize("text", ["0s", "0h0m", "0d"])
def test_parse_window_rejects_zero(text: str) -> None:
    with pytest.raises(ValueError, match="longer than zero") as info:
        parse_window(text)
    assert repr(text) in str(info.value)


def test_parse_window_rejects_absurdly_long_durations_with_a_value_error() -> None:
    # A typo such as 99999999999d must be a ValueError (which settings turn into a one-line ConfigError),
    # not an OverflowError escaping from timedelta().
    with pytest.raises(ValueError):
        parse_window("99999999999d")


# -- parse_timezone --------------------------------------------------------------------------------


def test_parse_timezone_accepts_iana_names() -> None:
    assert parse_timezone("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert parse_timezone(" UTC ") == ZoneInfo("UTC")
    assert parse_timezone("America/Los_Angeles").key == "America/Los_Angeles"


@pytest.mark.parametrize("name", ["", "Mars/Base", "CEST+2", "../etc/passwd", "europe/berlin"])
def test_parse_timezone_rejects_unknown_names_with_an_example(name: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_timezone(name)
    message = str(info.value)
    assert repr(name) in message
    assert "Europe/Berlin" in message


# -- parse_crontab ---------------------------------------------------------------------------------


def test_parse_crontab_normalises_whitespace() -> None:
    assert parse_crontab("0  10 * *   1-5") == "0 10 * * 1-5"
    assert parse_crontab(" 30 9 * * * ") == "30 9 * * *"


@pytest.mark.parametrize(("expr", "count"), [("0 10 * *", 4), ("0 10 * * 1-5 *", 6), ("@daily", 1), ("", 0)])
def test_parse_crontab_requires_five_fields(expr: str, count: int) -> None:
    with pytest.raises(ValueError) as info:
        parse_crontab(expr)
    message = str(info.value)
    assert f"has {count} fields" in message
    assert "5" in message and "weekday" in message


@pytest.mark.parametrize("expr", ["61 10 * * *", "0 25 * * *", "0 10 * * 9", "0 10 32 * *", "x 10 * * *"])
def test_parse_crontab_rejects_invalid_fields(expr: str) -> None:
    with pytest.raises(ValueError, match="not a valid crontab") as info:
        parse_crontab(expr)
    assert repr(expr) in str(info.value)


def test_parse_crontab_rejects_a_schedule_that_never_fires() -> None:
    # February 31st never exists: accepting it means a bot that never posts and whose scheduler tick
    # raises CroniterBadDateError forever. It must fail at configuration time instead.
    with pytest.raises(ValueError):
        parse_crontab("0 10 31 2 *")


def _weekdays_of_slots(crontab: str) -> list[str]:
    sched = schedule(crontab)
    moment = utc("2026-01-04T00:00:00")  # a Sunday
    names = []
    for _ in range(7):
        moment = sched.next_slot(moment)
        names.append(moment.strftime("%a"))
    return names


def test_1_to_5_means_monday_to_friday_as_in_standard_cron() -> None:
    # APScheduler 3's CronTrigger.from_crontab numbers weekdays from Monday, so "1-5" there is
    # Tuesday..Saturday. Standard cron (and drillbot) means Monday..Friday.
    assert _weekdays_of_slots("0 10 * * 1-5") == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]
    assert _weekdays_of_slots("0 10 * * MON-FRI")[:5] == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def test_weekday_numbers_follow_standard_cron() -> None:
    assert set(_weekdays_of_slots("0 10 * * 0")) == {"Sun"}
    assert set(_weekdays_of_slots("0 10 * * 7")) == {"Sun"}
    assert set(_weekdays_of_slots("0 10 * * 6")) == {"Sat"}
    assert set(_weekdays_of_slots("0 10 * * 1")) == {"Mon"}


def test_saturday_is_not_a_slot_for_1_to_5() -> None:
    sched = schedule("0 10 * * 1-5")
    saturday = date(2026, 1, 10)
    assert saturday.strftime("%a") == "Sat"
    assert sched.first_slot(saturday) is None
    assert not sched.is_due(utc("2026-01-10T10:00:30"))
    assert sched.first_slot(date(2026, 1, 9)) == utc("2026-01-09T10:00:00")  # Friday is


def test_croniter_is_a_declared_dependency() -> None:
    # schedule.py imports croniter; a fresh `pip install drillbot` must install it.
    assert "croniter" in Path(ROOT / "bot/domain/schedule.py").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert "croniter" in names, f"croniter is imported by bot/domain/schedule.py but not in {sorted(names)}"


# -- Schedule.is_due -------------------------------------------------------------------------------


def test_due_just_after_the_weekday_slot() -> None:
    sched = schedule()
    assert sched.is_due(utc("2026-01-05T10:00:30"))  # Monday
    assert sched.is_due(utc("2026-01-05T10:00:00"))  # exactly at the slot


def test_not_due_before_the_slot() -> None:
    sched = schedule()
    assert not sched.is_due(utc("2026-01-05T09:59:00"))
    assert not sched.is_due(utc("2026-01-05T09:59:59.999"))
    assert not sched.is_due(utc("2026-01-05T00:00:00"))


def test_still_due_within_the_window_after_the_slot_catch_up() -> None:
    sched = schedule(window="6h")
    assert sched.is_due(utc("2026-01-05T10:20:00"))  # the bot was down at 10:00
    assert sched.is_due(utc("2026-01-05T15:59:59"))


def test_not_due_after_slot_plus_window() -> None:
    sched = schedule(window="6h")
    assert not sched.is_due(utc("2026-01-05T16:00:00"))
    assert not sched.is_due(utc("2026-01-05T18:00:00"))  # installed in the evening: wait for tomorrow
    short = schedule(window="2s")
    assert short.is_due(utc("2026-01-05T10:00:01"))
    assert not short.is_due(utc("2026-01-05T10:00:02"))


def test_catch_up_never_crosses_into_the_next_local_day() -> None:
    sched = schedule("0 22 * * *", window="6h")
    assert sched.is_due(utc("2026-01-05T23:59:00"))
    assert not sched.is_due(utc("2026-01-06T00:30:00"))  # still inside 6h, but a new local day


@pytest.mark.parametrize("moment", ["2026-01-10T10:00:30", "2026-01-11T10:00:30", "2026-01-11T12:00:00"])
def test_not_due_on_weekends(moment: str) -> None:
    assert not schedule().is_due(utc(moment))


def test_is_due_uses_the_drill_timezone() -> None:
    sched = schedule(tz="Europe/Berlin", window="1h")
    # Winter (CET, UTC+1): 10:00 in Berlin is 09:00 UTC.
    assert not sched.is_due(utc("2026-01-05T08:59:59"))
    assert sched.is_due(utc("2026-01-05T09:00:30"))
    assert not sched.is_due(utc("2026-01-05T10:00:30"))  # 11:00 in Berlin: past the 1h window


def test_is_due_follows_berlin_across_the_spring_dst_change() -> None:
    sched = schedule(tz="Europe/Berlin", window="1h")
    # Friday 27 March 2026 is CET (UTC+1); Monday 30 March is CEST (UTC+2) after the change on the 29th.
    assert sched.is_due(utc("2026-03-27T09:00:30"))
    assert not sched.is_due(utc("2026-03-30T07:59:00"))
    assert sched.is_due(utc("2026-03-30T08:00:30"))
    assert sched.is_due(utc("2026-03-30T08:59:59"))
    assert not sched.is_due(utc("2026-03-30T09:00:30"))
    assert not sched.is_due(utc("2026-03-28T09:00:30"))  # Saturday


def test_is_due_follows_berlin_across_the_autumn_dst_change() -> None:
    sched = schedule(tz="Europe/Berlin", window="1h")
    # Friday 23 October 2026 is CEST (UTC+2); Monday 26 October is CET (UTC+1).
    assert sched.is_due(utc("2026-10-23T08:00:30"))
    assert not sched.is_due(utc("2026-10-23T09:00:30"))
    assert not sched.is_due(utc("2026-10-26T08:59:00"))
    assert sched.is_due(utc("2026-10-26T09:00:30"))


def test_a_slot_in_the_spring_gap_still_happens_that_day() -> None:
    sched = schedule("30 2 * * *", tz="Europe/Berlin", window="1h")
    # 02:30 does not exist in Berlin on 29 March 2026; the drill of that day must still happen.
    slot = sched.first_slot(date(2026, 3, 29))
    assert slot is not None and slot.astimezone(BERLIN).date() == date(2026, 3, 29)
    assert sched.is_due(slot.astimezone(UTC) + timedelta(seconds=30))


def test_catch_up_window_is_real_time_when_clocks_go_back() -> None:
    # 25 October 2026: Berlin goes from 03:00 CEST back to 02:00 CET. The slot is 01:30 CEST = 23:30 UTC
    # on the 24th; a 2h window ends at 01:30 UTC (the drill's deadline is posted_at + window, real time).
    sched = schedule("30 1 * * *", tz="Europe/Berlin", window="2h")
    assert sched.is_due(utc("2026-10-25T01:29:00"))
    assert not sched.is_due(utc("2026-10-25T02:00:00")), "2h30m after the slot, yet still due"


def test_catch_up_window_is_real_time_when_clocks_go_forward() -> None:
    # 29 March 2026: Berlin jumps from 02:00 CET to 03:00 CEST. The slot is 01:30 CET = 00:30 UTC; a 2h
    # window ends at 02:30 UTC.
    sched = schedule("30 1 * * *", tz="Europe/Berlin", window="2h")
    assert sched.is_due(utc("2026-03-29T00:31:00"))
    assert sched.is_due(utc("2026-03-29T02:00:00")), "only 1h30m after the slot, yet no longer due"
    assert not sched.is_due(utc("2026-03-29T02:30:00"))


def test_is_due_accepts_a_local_aware_now() -> None:
    sched = schedule(tz="Europe/Berlin", window="1h")
    assert sched.is_due(datetime(2026, 1, 5, 10, 0, 30, tzinfo=BERLIN))
    assert not sched.is_due(datetime(2026, 1, 5, 9, 59, tzinfo=BERLIN))


# -- Schedule.local_date / slots ---------------------------------------------------------------------


def test_local_date_is_the_day_in_the_drill_timezone() -> None:
    late_monday_utc = utc("2026-01-05T23:30:00")
    assert schedule(tz="UTC").local_date(late_monday_utc) == date(2026, 1, 5)
    assert schedule(tz="Europe/Berlin").local_date(late_monday_utc) == date(2026, 1, 6)
    assert schedule(tz="America/Los_Angeles").local_date(utc("2026-01-06T03:00:00")) == date(2026, 1, 5)
    # In summer Berlin is UTC+2: 22:30 UTC is already the next day.
    assert schedule(tz="Europe/Berlin").local_date(utc("2026-07-01T22:30:00")) == date(2026, 7, 2)
    assert schedule(tz="Europe/Berlin").local_date(utc("2026-07-01T21:59:59")) == date(2026, 7, 1)


def test_next_slot_skips_the_weekend() -> None:
    sched = schedule()
    assert sched.next_slot(utc("2026-01-09T10:00:00")) == utc("2026-01-12T10:00:00")  # Fri -> Mon
    assert sched.next_slot(utc("2026-01-05T09:00:00")) == utc("2026-01-05T10:00:00")


def test_first_slot_in_the_drill_timezone() -> None:
    sched = schedule(tz="Europe/Berlin")
    assert sched.first_slot(date(2026, 1, 5)) == utc("2026-01-05T09:00:00")
    assert sched.first_slot(date(2026, 7, 6)) == utc("2026-07-06T08:00:00")
    assert sched.first_slot(date(2026, 7, 4)) is None  # Saturday


# -- DRILL_SCHEDULE=off ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["off", "OFF", " Off "])
def test_parse_schedule_accepts_off(text: str) -> None:
    assert parse_schedule(text) == OFF
    assert parse_schedule("0  10 * * 1-5") == "0 10 * * 1-5"  # any other text is a crontab, normalised


def test_an_off_schedule_is_never_due_not_even_at_midnight_on_new_year() -> None:
    """The tests used to say "never" with `0 0 1 1 *`, which fires at 00:00 on 1 January."""
    sched = Schedule(crontab=OFF, tz=ZoneInfo("UTC"), window=timedelta(days=1))
    for moment in (utc("2027-01-01T00:00:00"), utc("2027-01-01T00:00:05"), utc("2026-06-15T10:00:00")):
        assert not sched.is_due(moment), moment
    assert sched.first_slot(date(2027, 1, 1)) is None
    assert sched.next_slot(utc("2026-12-31T23:59:59")) is None
    assert schedule("0 0 1 1 *", window="1d").is_due(utc("2027-01-01T00:00:05")), "the old stand-in did fire"
