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

__all__ = ["Program", "inspect_programs", "load_programs", "single_program"]


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
    """Read and validate drills.yaml; the first problem is a ConfigError naming the file and the program."""
    programs, problems = inspect_programs(
        path,
        bank=bank,
        default_schedule=default_schedule,
        default_timezone=default_timezone,
        default_window=default_window,
        skip_dates=skip_dates,
    )
    if problems:
        raise ConfigError(problems[0])
    return programs


def inspect_programs(
    path: str,
    *,
    bank: QuestionBank,
    default_schedule: str,
    default_timezone: str,
    default_window: timedelta,
    skip_dates: frozenset[date],
) -> tuple[list[Program], list[str]]:
    """The valid programs of drills.yaml and every problem found, one line each naming file and program."""
    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], [f"DRILL_PROGRAMS_FILE: {path} not found"]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        return [], [f"{path}{line}: invalid YAML ({exc.problem})"]
    except (OSError, yaml.YAMLError) as exc:
        return [], [f"{path}: cannot read the file ({exc.__class__.__name__})"]
    if not isinstance(data, dict) or not isinstance(data.get("programs"), list) or not data["programs"]:
        return [], [f"{path}: expected a top-level 'programs:' list with at least one program"]
    programs: list[Program] = []
    problems: list[str] = []
    channels: dict[str, str] = {}
    for index, raw in enumerate(data["programs"], start=1):
        label = f"program {raw.get('name')!r}" if isinstance(raw, dict) and raw.get("name") else f"program #{index}"
        try:
            spec = _ProgramSpec.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"]) or "program"
                message = str(error["msg"]).removeprefix("Value error, ")
                if error["type"] == "missing":
                    message = "is required"
                problems.append(f"{path}: {label}: {field} {message}")
            continue
        if spec.channel in channels:
            problems.append(
                f"{path}: {label}: duplicate channel {spec.channel} (also used by program {channels[spec.channel]!r})"
            )
            continue
        channels[spec.channel] = spec.name
        unknown = [
            *_unknown(path, label, "category", spec.categories, set(bank.categories)),
            *_unknown(path, label, "difficulty", spec.difficulties, set(DIFFICULTIES)),
        ]
        if unknown:
            problems.extend(unknown)
            continue
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
            problems.append(f"{path}: {label}: no question in the bank matches its categories and difficulties")
            continue
        programs.append(program)
    return programs, problems


def _unknown(path: str, label: str, kind: str, values: Iterable[str], known: set[str]) -> list[str]:
    choices = ", ".join(sorted(known))
    unknown = [value for value in values if value.lower() not in known]
    return [f"{path}: {label}: unknown {kind} {value!r} (known: {choices})" for value in unknown]
