"""Drill programs: which channel gets which drills, when, drawn from which part of the bank.

Without DRILL_PROGRAMS_FILE there is one program built from the single-channel settings (DRILL_CHANNEL,
DRILL_SCHEDULE, ...). With it, `drills.yaml` defines several:

    programs:
      - name: backend
        channel: C0123456789
        schedule: "0 10 * * 1-5"        # optional, default DRILL_SCHEDULE
        timezone: Europe/Berlin         # optional, default DRILL_TIMEZONE
        answer_window: 6h               # optional, default DRILL_ANSWER_WINDOW
        managers: [U0MANAGER1]          # optional, added to DRILL_MANAGERS for this program
        categories: [databases, caching]  # optional, default: every category
        difficulties: [medium, hard]    # optional, default: all three

Rotation, streaks and leaderboards are per program (a program is its channel).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.domain.questions import DIFFICULTIES, QuestionBank
from bot.domain.schedule import Schedule, parse_schedule, parse_timezone, parse_window
from bot.errors import ConfigError

__all__ = ["Program", "load_programs", "single_program"]


@dataclass(frozen=True)
class Program:
    name: str
    channel: str
    schedule: Schedule
    managers: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()  # empty: all
    difficulties: frozenset[str] = frozenset()  # empty: all

    def question_ids(self, bank: QuestionBank) -> list[str]:
        return [
            q.id
            for q in bank.questions
            if (not self.categories or q.category in self.categories)
            and (not self.difficulties or q.difficulty in self.difficulties)
        ]


class _ProgramSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=64)
    channel: str = Field(min_length=1, max_length=32)
    schedule: str | None = None
    timezone: str | None = None
    answer_window: str | None = None
    managers: list[str] = []
    categories: list[str] = []
    difficulties: list[str] = []

    @field_validator("schedule")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        return parse_schedule(value) if value else None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value:
            parse_timezone(value)
        return value

    @field_validator("answer_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value:
            parse_window(value)
        return value


def single_program(*, channel: str, schedule: Schedule, managers: Iterable[str] = ()) -> Program:
    return Program(name="default", channel=channel, schedule=schedule, managers=frozenset(managers))


def load_programs(
    path: str,
    *,
    bank: QuestionBank,
    default_schedule: str,
    default_timezone: str,
    default_window: timedelta,
    skip_dates: frozenset[date],
) -> list[Program]:
    """Read and validate drills.yaml; every problem is one line naming the file and the program."""
    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"DRILL_PROGRAMS_FILE: {path} not found") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({exc.problem})") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("programs"), list) or not data["programs"]:
        raise ConfigError(f"{path}: expected a top-level 'programs:' list with at least one program")
    programs: list[Program] = []
    channels: dict[str, str] = {}
    for index, raw in enumerate(data["programs"], start=1):
        label = f"program {raw.get('name')!r}" if isinstance(raw, dict) and raw.get("name") else f"program #{index}"
        try:
            spec = _ProgramSpec.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "program"
            message = "is required" if error["type"] == "missing" else str(error["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"{path}: {label}: {field} {message}") from None
        if spec.channel in channels:
            raise ConfigError(
                f"{path}: {label}: duplicate channel {spec.channel} (also used by program {channels[spec.channel]!r})"
            )
        channels[spec.channel] = spec.name
        _check_known(path, label, "category", spec.categories, set(bank.categories))
        _check_known(path, label, "difficulty", spec.difficulties, set(DIFFICULTIES))
        schedule = Schedule(
            crontab=spec.schedule or default_schedule,
            tz=parse_timezone(spec.timezone or default_timezone),
            window=parse_window(spec.answer_window) if spec.answer_window else default_window,
            skip_dates=skip_dates,
        )
        program = Program(
            name=spec.name,
            channel=spec.channel,
            schedule=schedule,
            managers=frozenset(spec.managers),
            categories=frozenset(c.lower() for c in spec.categories),
            difficulties=frozenset(d.lower() for d in spec.difficulties),
        )
        if not program.question_ids(bank):
            raise ConfigError(f"{path}: {label}: no question in the bank matches its categories and difficulties")
        programs.append(program)
    return programs


def _check_known(path: str, label: str, kind: str, values: Iterable[str], known: set[str]) -> None:
    for value in values:
        if value.lower() not in known:
            choices = ", ".join(sorted(known))
            raise ConfigError(f"{path}: {label}: unknown {kind} {value!r} (known: {choices})")
