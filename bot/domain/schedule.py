"""Time rules of a drill: the answer window, the daily slot, the deadline.

A channel gets at most one drill per local day (in DRILL_TIMEZONE). The day's drill is due at a
DRILL_SCHEDULE slot, and stays due (catch-up after downtime) for one answer window after that slot, on
the same local day: a bot that was down at 10:00 posts at 10:20, but one installed at 18:00 with a 6h
window waits for the next slot instead of posting at once. A schedule of `off` has no slots: drills are
posted only by hand (`drillbot post`), and still revealed at their deadline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

__all__ = ["OFF", "Schedule", "parse_crontab", "parse_schedule", "parse_timezone", "parse_window"]

_WINDOW_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_SECONDS = 30 * 86400
OFF = "off"  # a schedule with no slots


def parse_window(text: str) -> timedelta:
    """Parse `45s`, `30m`, `6h`, `1d` or a sum such as `1h30m` into a positive timedelta."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or _WINDOW_PART.sub("", cleaned):
        raise ValueError(f"{text!r} is not a duration; use a number and a unit, e.g. 45s, 30m, 6h or 1d")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _WINDOW_PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if seconds > MAX_WINDOW_SECONDS:
        raise ValueError(f"{text!r} is too long; the answer window is at most 30d")
    return timedelta(seconds=seconds)


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone name, e.g. Europe/Berlin or UTC") from exc


def parse_crontab(expr: str) -> str:
    """Validate a standard 5-field crontab (weekday 0 or 7 = Sunday) and return it normalised.

    croniter rather than APScheduler 3's `CronTrigger.from_crontab`, which numbers weekdays from Monday
    (its documented historical mistake): `1-5` would mean Tuesday to Saturday there.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r} has {len(fields)} fields; a crontab has 5 (minute hour day month weekday)")
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise ValueError(f"{expr!r} is not a valid crontab (minute hour day month weekday, e.g. 0 10 * * 1-5)")
    try:  # valid syntax can still never fire, e.g. 31 February
        croniter(normalised, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"{expr!r} never matches a date") from None
    return normalised


def parse_schedule(expr: str) -> str:
    """A drill schedule: a crontab (see `parse_crontab`), or `off` for no scheduled drills at all."""
    if expr.strip().lower() == OFF:
        return OFF
    try:
        return parse_crontab(expr)
    except ValueError as exc:
        raise ValueError(f"{exc}; or off for no scheduled drills") from None


@dataclass(frozen=True)
class Schedule:
    """When drills happen in one channel."""

    crontab: str  # a normalised crontab, or OFF
    tz: ZoneInfo
    window: timedelta
    skip_dates: frozenset[date] = frozenset()  # holidays: no scheduled drill (streaks never break on them)

    def local_date(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    @property
    def off(self) -> bool:
        return self.crontab == OFF

    def first_slot(self, day: date) -> datetime | None:
        """The first scheduled time on `day` (local), or None when the schedule skips that day."""
        if self.off:
            return None
        just_before = datetime.combine(day, time(0), tzinfo=self.tz) - timedelta(microseconds=1)
        slot = self._next_after(just_before)
        return slot if slot.astimezone(self.tz).date() == day else None

    def last_slot(self, now: datetime) -> datetime:
        """The latest slot at or before `now`."""
        local = now.astimezone(self.tz) + timedelta(seconds=1)
        slot: datetime = croniter(self.crontab, local).get_prev(datetime)
        return slot

    def skips(self, now: datetime) -> bool:
        """Whether `now`'s local day is a skip date (a holiday): no drill is posted on it."""
        return self.local_date(now) in self.skip_dates

    def is_due(self, now: datetime) -> bool:
        """Whether today's drill should be posted now (assuming none has been posted today)."""
        if self.off or self.skips(now):
            return False
        slot = self.last_slot(now)
        same_day = slot.astimezone(self.tz).date() == self.local_date(now)
        # Real elapsed time, not wall-clock time: a DST change must not stretch or shrink the window.
        start = slot.astimezone(UTC)
        return same_day and start <= now.astimezone(UTC) < start + self.window

    def next_slot(self, now: datetime) -> datetime | None:
        return None if self.off else self._next_after(now)

    def next_drill(self, now: datetime) -> datetime | None:
        """The next slot after `now` that is not on a skip date (None: no schedule, or skip dates cover the
        next 1000)."""
        if self.off:
            return None
        slot = self._next_after(now)
        for _ in range(1000):
            if slot.astimezone(self.tz).date() not in self.skip_dates:
                return slot
            slot = self._next_after(slot)
        return None

    def _next_after(self, moment: datetime) -> datetime:
        slot: datetime = croniter(self.crontab, moment.astimezone(self.tz)).get_next(datetime)
        return slot
