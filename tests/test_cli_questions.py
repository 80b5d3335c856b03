"""`drillbot questions` and the editorial checks of `drillbot check` (issue: a bank worth a year)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.fakes.workspace import SHIPPED_BANK


def test_questions_json_filters_by_category_difficulty_and_tag(run_cli):
    shipped = {"QUESTIONS_FILE": str(SHIPPED_BANK)}
    result = run_cli("questions", "--category", "caching", "--difficulty", "hard", "--format", "json", **shipped)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows and all(r["category"] == "caching" and r["difficulty"] == "hard" for r in rows)
    assert {"id", "title", "guidance", "key_points", "tags"} <= set(rows[0])

    tagged = json.loads(run_cli("questions", "--tag", "consensus", "--format", "json", **shipped).stdout)
    assert tagged and all("consensus" in r["tags"] for r in tagged)

    everything = json.loads(run_cli("questions", "--format", "json", **shipped).stdout)
    assert len(everything) >= 150
    assert len(rows) < len(everything)


def test_questions_table_is_for_people(run_cli):
    result = run_cli("questions", "--category", "caching", "--format", "table")
    assert result.returncode == 0, result.stderr
    assert "cache-stampede" in result.stdout
    assert "isolation-anomalies" not in result.stdout  # a databases question
    assert "1 of 3 questions" in result.stdout


def test_check_summary_counts_categories_and_difficulties(run_cli):
    result = run_cli("check", QUESTIONS_FILE=str(SHIPPED_BANK))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("OK: 156 questions")
    for category in ("system-design", "distributed-systems", "behavioural", "messaging"):
        assert f"{category} 12" in line
    assert "easy" in line and "medium" in line and "hard" in line


def _write_bank(path: Path, **changes: object) -> Path:
    data = yaml.safe_load(SHIPPED_BANK.read_text())
    first = data["questions"][0]
    first.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def style_warning(run_cli, **variables: str) -> str:  # type: ignore[no-untyped-def]
    """A style rule is a warning (exit 0, the OK line printed), and an error under --strict."""
    result = run_cli("check", **variables)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: "), result.stderr
    strict = run_cli("check", "--strict", **variables).error_line()
    assert strict.removeprefix("error: ") == lines[0].removeprefix("warning: ")
    return lines[0]


def test_check_warns_of_short_guidance_naming_question(run_cli, tmp_path):
    bank = _write_bank(tmp_path / "bank.yaml", guidance="Too short to help anyone.")
    line = style_warning(run_cli, QUESTIONS_FILE=str(bank))
    assert "design-millions-concurrent-users" in line and "guidance" in line and "60-200" in line


def test_check_warns_of_tag_outside_vocabulary(run_cli, tmp_path):
    bank = _write_bank(tmp_path / "bank.yaml", tags=["scalability", "blockchain"])
    line = style_warning(run_cli, QUESTIONS_FILE=str(bank))
    assert "'blockchain'" in line and "vocabulary" in line


def test_check_warns_of_duplicate_title(run_cli, tmp_path):
    data = yaml.safe_load(SHIPPED_BANK.read_text())
    data["questions"][1]["title"] = data["questions"][0]["title"].upper()
    bank = tmp_path / "bank.yaml"
    bank.write_text(yaml.safe_dump(data, sort_keys=False))
    line = style_warning(run_cli, QUESTIONS_FILE=str(bank))
    assert "duplicate title" in line


def test_team_questions_in_a_second_file_are_merged_and_clashes_named(run_cli, tmp_path):
    team = tmp_path / "team.yaml"
    question = yaml.safe_load(SHIPPED_BANK.read_text())["questions"][0]
    team.write_text(yaml.safe_dump({"questions": [dict(question, id="our-own-question", title="Our own?")]}))
    both = {"QUESTIONS_FILE": f"{SHIPPED_BANK},{team}"}
    rows = json.loads(run_cli("questions", "--format", "json", **both).stdout)
    assert "our-own-question" in {r["id"] for r in rows}

    team.write_text(yaml.safe_dump({"questions": [question]}))
    line = run_cli("check", **both).error_line()
    assert "duplicate question id 'design-millions-concurrent-users'" in line
    assert "team.yaml" in line and "questions.yaml" in line
