"""bot/domain/programs.py: drills.yaml validation, defaults, question filters, and skip dates."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.domain.programs import Program, load_programs, single_program
from bot.domain.questions import load_bank
from bot.domain.schedule import Schedule, parse_crontab, parse_timezone
from bot.drills import build_programs
from bot.errors import ConfigError
from bot.settings import Settings
from tests.fakes.workspace import TEST_BANK

BANK = load_bank(str(TEST_BANK))
DEFAULT_SCHEDULE = "0 10 * * 1-5"
DEFAULT_TZ = "UTC"
DEFAULT_WINDOW = timedelta(hours=6)

GOOD_A = """\
  - name: backend
    channel: CBACKEND1
"""


def write(tmp_path: Path, text: str, name: str = "drills.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def load(path: str, *, skip_dates: frozenset[date] = frozenset()) -> list[Program]:
    return load_programs(
        path,
        bank=BANK,
        default_schedule=DEFAULT_SCHEDULE,
        default_timezone=DEFAULT_TZ,
        default_window=DEFAULT_WINDOW,
        skip_dates=skip_dates,
    )


def error_of(tmp_path: Path, text: str) -> tuple[str, str]:
    """Load a drills.yaml that must be refused; returns (its path, the one-line message)."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert message.startswith(path), f"does not name the file first: {message!r}"
    assert "Traceback" not in message
    return path, message


# -- validation: every problem is one line naming the file and the program ---------------------------------


def test_unknown_category_names_file_program_and_the_known_categories(tmp_path):
    _, message = error_of(
        tmp_path,
        "programs:\n" + GOOD_A + "  - name: cache\n    channel: CCACHE001\n    categories: [caching, kubernetes]\n",
    )
    assert "program 'cache'" in message
    assert "unknown category 'kubernetes'" in message
    for known in ("apis", "caching", "databases"):
        assert known in message
    assert "backend" not in message  # the good program is not blamed


def test_unknown_difficulty(tmp_path):
    _, message = error_of(
        tmp_path, "programs:\n  - name: hardcore\n    channel: CHARD0001\n    difficulties: [medium, insane]\n"
    )
    assert "program 'hardcore'" in message
    assert "unknown difficulty 'insane'" in message
    assert "easy, hard, medium" in message


@pytest.mark.parametrize("crontab", ["61 10 * * *", "0 10 * *", "every day", "0 10 31 2 *"])
def test_bad_crontab(tmp_path, crontab):
    _, message = error_of(tmp_path, f'programs:\n  - name: weird\n    channel: CWEIRD001\n    schedule: "{crontab}"\n')
    assert "program 'weird'" in message
    assert "schedule" in message
    assert crontab in message


def test_bad_timezone(tmp_path):
    _, message = error_of(
        tmp_path, "programs:\n  - name: mars\n    channel: CMARS0001\n    timezone: Mars/Olympus_Mons\n"
    )
    assert "program 'mars'" in message
    assert "timezone" in message and "Mars/Olympus_Mons" in message
    assert "IANA" in message


@pytest.mark.parametrize("window", ["soon", "0h", "45d", "-1h"])
def test_bad_answer_window(tmp_path, window):
    _, message = error_of(
        tmp_path, f'programs:\n  - name: slow\n    channel: CSLOW0001\n    answer_window: "{window}"\n'
    )
    assert "program 'slow'" in message
    assert "answer_window" in message
    assert window in message


def test_duplicate_channel_names_both_programs(tmp_path):
    _, message = error_of(
        tmp_path,
        "programs:\n" + GOOD_A + "  - name: again\n    channel: ' CBACKEND1 '\n",
    )
    assert "program 'again'" in message
    assert "duplicate channel CBACKEND1" in message
    assert "'backend'" in message


def test_missing_channel(tmp_path):
    _, message = error_of(tmp_path, "programs:\n  - name: nowhere\n    schedule: '0 9 * * *'\n")
    assert "program 'nowhere'" in message
    assert "channel is required" in message


def test_missing_name_is_named_by_position(tmp_path):
    _, message = error_of(tmp_path, "programs:\n" + GOOD_A + "  - channel: CNONAME01\n")
    assert "program #2" in message
    assert "name is required" in message


def test_unknown_key_is_refused(tmp_path):
    _, message = error_of(tmp_path, "programs:\n  - name: typo\n    channel: CTYPO0001\n    schedul: '0 9 * * *'\n")
    assert "program 'typo'" in message
    assert "schedul" in message


def test_invalid_yaml_names_file_and_line(tmp_path):
    path, message = error_of(
        tmp_path,
        "programs:\n  - name: backend\n    channel: CBACKEND1\n    categories: [caching, apis\n  - name: x\n",
    )
    assert message.startswith(f"{path}:")
    line = message[len(path) + 1 :].split(":", 1)[0]
    assert line.isdigit(), f"no line number after the file name: {message!r}"
    assert 4 <= int(line) <= 6
    assert "invalid YAML" in message


@pytest.mark.parametrize(
    "text",
    ["", "programs: []\n", "programs:\n", "something_else: 1\n", "- name: backend\n  channel: CBACKEND1\n"],
    ids=["empty-file", "empty-list", "null", "no-programs-key", "top-level-list"],
)
def test_no_programs(tmp_path, text):
    _, message = error_of(tmp_path, text)
    assert "programs" in message


def test_a_program_whose_filters_match_no_question(tmp_path):
    # The test bank's only caching question is medium.
    _, message = error_of(
        tmp_path,
        "programs:\n  - name: empty\n    channel: CEMPTY001\n    categories: [caching]\n    difficulties: [hard]\n",
    )
    assert "program 'empty'" in message
    assert "no question" in message


def test_missing_file_names_the_setting(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert "DRILL_PROGRAMS_FILE" in str(info.value) and path in str(info.value)


# -- what a valid file means -----------------------------------------------------------------------------------


def test_defaults_come_from_the_single_channel_settings(tmp_path):
    path = write(
        tmp_path,
        """\
        programs:
          - name: plain
            channel: CPLAIN001
          - name: custom
            channel: CCUSTOM01
            schedule: "30 9 * * 1"
            timezone: Europe/Berlin
            answer_window: 1h30m
            managers: [ULEAD0001, ULEAD0002]
            categories: [Caching]
            difficulties: [MEDIUM]
        """,
    )
    skip = frozenset({date(2024, 12, 25)})
    plain, custom = load(path, skip_dates=skip)
    assert plain.name == "plain" and plain.channel == "CPLAIN001"
    assert plain.schedule == Schedule(DEFAULT_SCHEDULE, ZoneInfo(DEFAULT_TZ), DEFAULT_WINDOW, skip)
    assert plain.managers == frozenset() and plain.categories == frozenset() and plain.difficulties == frozenset()
    assert custom.schedule == Schedule("30 9 * * 1", ZoneInfo("Europe/Berlin"), timedelta(hours=1, minutes=30), skip)
    assert custom.managers == {"ULEAD0001", "ULEAD0002"}
    assert custom.categories == {"caching"} and custom.difficulties == {"medium"}


def test_build_programs_uses_the_settings(tmp_path):
    path = write(tmp_path, "programs:\n  - name: plain\n    channel: CPLAIN001\n")
    base = {
        "drill_schedule": "15 8 * * 2",
        "drill_timezone": "Asia/Tokyo",
        "drill_answer_window": "2h",
        "drill_skip_dates": "2024-01-01, 2024-12-24",
        "questions_file": str(TEST_BANK),
    }
    from_file = build_programs(
        Settings(_env_file=None, drill_programs_file=path, drill_channel="CIGNORED1", **base), BANK
    )
    single = build_programs(Settings(_env_file=None, drill_channel="CSINGLE01", **base), BANK)
    none = build_programs(Settings(_env_file=None, **base), BANK)
    expected = Schedule(
        "15 8 * * 2", ZoneInfo("Asia/Tokyo"), timedelta(hours=2), frozenset({date(2024, 1, 1), date(2024, 12, 24)})
    )
    assert [(p.name, p.channel, p.schedule) for p in from_file] == [("plain", "CPLAIN001", expected)]
    assert [(p.channel, p.schedule) for p in single] == [("CSINGLE01", expected)]
    assert none == []


def test_question_ids_filter_by_categories_and_difficulties():
    schedule = Schedule(parse_crontab(DEFAULT_SCHEDULE), parse_timezone("UTC"), DEFAULT_WINDOW)
    everything = single_program(channel="C1", schedule=schedule)
    assert everything.question_ids(BANK) == ["cache-stampede", "isolation-anomalies", "idempotent-api"]

    def program(categories=(), difficulties=()):
        return Program("p", "C1", schedule, categories=frozenset(categories), difficulties=frozenset(difficulties))

    assert program(categories={"caching"}).question_ids(BANK) == ["cache-stampede"]
    assert program(categories={"caching", "apis"}).question_ids(BANK) == ["cache-stampede", "idempotent-api"]
    assert program(difficulties={"hard"}).question_ids(BANK) == ["isolation-anomalies"]
    assert program(difficulties={"easy", "medium"}).question_ids(BANK) == ["cache-stampede", "idempotent-api"]
    assert program(categories={"databases"}, difficulties={"hard"}).question_ids(BANK) == ["isolation-anomalies"]
    assert program(categories={"databases"}, difficulties={"easy"}).question_ids(BANK) == []


# -- skip dates ------------------------------------------------------------------------------------------------


def test_skip_dates_make_a_due_slot_not_due():
    christmas = date(2024, 12, 25)  # a Wednesday
    daily = Schedule(parse_crontab("0 10 * * *"), parse_timezone("UTC"), timedelta(hours=6))
    skipping = Schedule(daily.crontab, daily.tz, daily.window, frozenset({christmas}))
    slot = datetime(2024, 12, 25, 10, 0, 5, tzinfo=UTC)
    assert daily.is_due(slot)
    assert not skipping.is_due(slot)
    assert not skipping.is_due(slot + timedelta(hours=3))
    # The days around it are untouched.
    assert skipping.is_due(slot - timedelta(days=1))
    assert skipping.is_due(slot + timedelta(days=1))


def test_skip_dates_are_local_dates_of_the_program():
    # 2024-12-25 in Auckland (UTC+13) starts at 2024-12-24 11:00 UTC.
    auckland = Schedule(
        parse_crontab("0 9 * * *"),
        parse_timezone("Pacific/Auckland"),
        timedelta(hours=2),
        frozenset({date(2024, 12, 25)}),
    )
    assert not auckland.is_due(datetime(2024, 12, 24, 20, 0, 5, tzinfo=UTC))  # 09:00:05 on the 25th there
    assert auckland.is_due(datetime(2024, 12, 25, 20, 0, 5, tzinfo=UTC))  # 09:00:05 on the 26th there


def test_skip_dates_reach_every_program_of_the_file(tmp_path):
    path = write(
        tmp_path,
        "programs:\n  - name: a\n    channel: CA0000001\n  - name: b\n    channel: CB0000001\n    schedule: '0 7 * * *'\n",
    )
    skip = frozenset({date(2024, 3, 5)})
    for program in load(path, skip_dates=skip):
        first = program.schedule.first_slot(date(2024, 3, 5))
        assert first is not None
        assert not program.schedule.is_due(first + timedelta(seconds=5))
        next_day = program.schedule.first_slot(date(2024, 3, 6))
        assert next_day is not None and program.schedule.is_due(next_day + timedelta(seconds=5))


def test_inspect_programs_reports_every_problem_and_keeps_the_valid_programs(tmp_path):
    from bot.domain.programs import inspect_programs

    path = write(
        tmp_path,
        """\
        programs:
          - name: backend
            channel: CBACKEND1
          - name: broken
            channel: CBROKEN01
            timezone: Mars/Base
            answer_window: forever
          - name: twin
            channel: CBACKEND1
          - name: caching
            channel: CCACHE001
            categories: [caching]
        """,
    )
    programs, problems = inspect_programs(
        path, bank=BANK, default_schedule=DEFAULT_SCHEDULE, default_timezone=DEFAULT_TZ,
        default_window=DEFAULT_WINDOW, skip_dates=frozenset(),
    )
    assert [p.name for p in programs] == ["backend", "caching"]
    assert len(problems) == 3, problems
    assert "'broken'" in problems[0] and "timezone" in problems[0]
    assert "'broken'" in problems[1] and "answer_window" in problems[1]
    assert "'twin'" in problems[2] and "duplicate channel" in problems[2]
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == problems[0]
