"""The README's promises that can drift: its two commands (and CI running exactly the test one), links
that resolve, and every command and setting documented."""

from __future__ import annotations

import re
from pathlib import Path

from bot.cli import main
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUN_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/drillbot run"
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest -n 4"


def test_the_first_screen_has_the_two_commands_and_a_look_before_you_install():
    first_screen = README[: README.index("## Set up")]
    assert RUN_COMMAND in first_screen.splitlines()
    assert TEST_COMMAND in first_screen.splitlines()
    assert re.search(r"about \d+ minutes? on a 2-core machine", first_screen)  # how long the tests take
    assert "drillbot preview" in first_screen and "drillbot questions" in first_screen


def test_ci_lints_and_type_checks_then_runs_exactly_the_readme_test_command():
    steps = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert steps[-1] == TEST_COMMAND
    assert steps.index(".venv/bin/ruff check .") < len(steps) - 1
    assert steps.index(".venv/bin/mypy") < len(steps) - 1


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 6
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_the_readme_links_every_docs_page():
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in README, page.name


def test_every_command_and_setting_is_in_the_readme():
    for name in main.commands:
        assert f"`drillbot {name}" in README, name
    for field in Settings.model_fields:
        assert f"`{field.upper()}`" in README, field
