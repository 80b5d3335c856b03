"""A drill carries its question: editing the bank never breaks a drill in flight (issue 17).

End to end against the fake Slack: post, edit the bank file (rename, delete, reword), restart (the bot reads
the bank at start), reveal. And the migration that gives drills from before it their copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.domain.questions import QuestionBank, inspect_bank, load_bank, orphaned_ids, replaces_problems
from bot.domain.rotation import next_question
from bot.drills import DrillService
from bot.errors import QuestionBankError
from bot.settings import Settings
from bot.slack_api import SlackGateway, make_client
from storage.db import Database
from storage.models import Drill
from tests.fakes.slack import FakeSlack
from tests.fakes.workspace import BOT_TOKEN, CHANNEL, TEST_BANK

TUESDAY_10 = datetime(2023, 11, 14, 10, 0, tzinfo=UTC)  # the fake Slack's timestamps fall on this day


@pytest.fixture
def bank_file(tmp_path: Path) -> Path:
    path = tmp_path / "bank.yaml"
    path.write_text(TEST_BANK.read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture
def start(fake_slack: FakeSlack, make_settings: Any, bank_file: Path, make_clock: Any) -> Iterator[Any]:
    made: list[Database] = []
    clock = make_clock(TUESDAY_10)

    def factory() -> DrillService:
        settings = make_settings(questions_file=str(bank_file), drill_answer_window="1h")
        bank = load_bank(str(bank_file))  # what a (re)start does
        db = Database(settings.database_url)
        db.upgrade(bank=bank)
        made.append(db)
        slack = SlackGateway(make_client(token=BOT_TOKEN, base_url=fake_slack.url))
        return DrillService(settings=settings, bank=bank, db=db, slack=slack, clock=clock)

    factory.clock = clock  # type: ignore[attr-defined]
    yield factory
    for db in made:
        db.dispose()


def _edit(path: Path, question_id: str, how: str) -> None:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"  - id: {question_id}\n")
    end = text.find("\n  - id: ", start + 1)
    block = text[start : end + 1 if end != -1 else len(text)]
    if how == "rename":
        new = block.replace(f"id: {question_id}", f"id: {question_id}-renamed\n    replaces: [{question_id}]")
    elif how == "delete":
        new = ""
    else:  # reword the guidance
        lines = block.splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("guidance:"))
        end_at = next(i for i in range(at + 1, len(lines)) if not lines[i].startswith("      "))
        new = "".join([*lines[:at], "    guidance: Completely reworded guidance after the drill was posted.\n",
                       *lines[end_at:]])
    path.write_text(text.replace(block, new), encoding="utf-8")


def _guidance_replies(fake: FakeSlack, thread: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages[CHANNEL] if m.get("thread_ts") == thread and "Guidance" in str(m.get("text"))]


@pytest.mark.parametrize("how", ["rename", "delete", "reword"])
def test_the_question_asked_is_the_question_revealed(
    how: str, start: Any, bank_file: Path, fake_slack: FakeSlack
) -> None:
    service = start()
    posted = service.post_today()
    assert posted.result == "posted" and posted.question_id
    asked = service.bank.get(posted.question_id)
    assert asked is not None

    _edit(bank_file, posted.question_id, how)
    restarted = start()
    assert restarted.bank.get(posted.question_id) is None or how == "reword"
    start.clock.advance(hours=1, minutes=1)
    assert restarted.reveal_due() == [posted.drill_id]

    replies = _guidance_replies(fake_slack, str(posted.ts))
    assert len(replies) == 1
    assert asked.guidance.split()[0] in replies[0]["text"]
    assert "Completely reworded" not in replies[0]["text"]
    # `drillbot post` the same day posts nothing more, whatever the bank says now.
    assert restarted.post_today(retry_failed=True).result == "exists"
    assert len(_guidance_replies(fake_slack, str(posted.ts))) == 1


def test_rotation_counts_a_replaced_id_as_asked(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text(TEST_BANK.read_text(encoding="utf-8"), encoding="utf-8")
    _edit(path, "cache-stampede", "rename")
    bank = load_bank(str(path))
    used = [bank.current_id(q) for q in ["cache-stampede", "isolation-anomalies"]]
    assert used == ["cache-stampede-renamed", "isolation-anomalies"]
    assert next_question(bank.ids, used, channel=CHANNEL, day=date(2026, 1, 5)) == "idempotent-api"
    assert orphaned_ids(bank, ["cache-stampede", "deleted-long-ago"]) == ["deleted-long-ago"]


def test_replaces_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    text = TEST_BANK.read_text(encoding="utf-8")
    text = text.replace("  - id: isolation-anomalies\n", "  - id: isolation-anomalies\n    replaces: [idempotent-api]\n")
    text = text.replace("  - id: idempotent-api\n", "  - id: idempotent-api\n    replaces: [old-one]\n")
    text = text.replace("  - id: cache-stampede\n", "  - id: cache-stampede\n    replaces: [old-one]\n")
    path.write_text(text, encoding="utf-8")
    bank, problems = inspect_bank(str(path))  # what `drillbot check` reports: every problem, as errors
    assert bank is not None and problems == replaces_problems(bank)
    with pytest.raises(QuestionBankError, match="still in the bank"):
        load_bank(str(path))  # and the bot refuses to start on it
    assert any("isolation-anomalies" in p and "idempotent-api" in p and "still in the bank" in p for p in problems)
    assert any("old-one" in p and "cache-stampede" in p and "idempotent-api" in p for p in problems)


def test_the_migration_gives_old_drills_their_question_or_a_marker(empty_database_url: str) -> None:
    database_url = empty_database_url
    db = Database(database_url)
    try:
        db.upgrade("0004")
        with db.engine.begin() as conn:
            for n, qid in enumerate(["cache-stampede", "gone-from-the-bank"]):
                conn.execute(
                    sa.text(
                        "INSERT INTO drills (channel, day, question_id, status, ts, deadline, answer_count, attempts,"
                        " streak_applied, sealed, count_shown, created_at)"
                        " VALUES (:c, :d, :q, 'failed', :ts, :dl, 0, 1, false, false, 0, :dl)"
                    ),
                    {"c": CHANNEL, "d": date(2026, 1, 5 + n), "q": qid, "ts": f"170000000{n}.1" if n else None,
                     "dl": datetime(2026, 1, 5 + n, 11)},
                )
        bank = load_bank(str(TEST_BANK))
        db.upgrade(bank=bank)
        with db.transaction() as session:
            kept, gone = session.query(Drill).order_by(Drill.id).all()
            assert (kept.status, gone.status) == ("post_failed", "reveal_failed")
            settings = Settings(_env_file=None, drill_channel=CHANNEL, database_url=database_url)  # type: ignore[call-arg]
            service = DrillService(settings=settings, bank=QuestionBank(questions=()), db=db, slack=None)  # type: ignore[arg-type]
            question = service.question_of(kept)
            assert question == bank.get("cache-stampede")
            placeholder = service.question_of(gone)
            assert placeholder.missing and "gone-from-the-bank" in placeholder.title
    finally:
        db.dispose()


def test_check_warns_about_ids_past_drills_used_that_the_bank_lost(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    url = f"sqlite:///{tmp_path / 'drills.db'}"
    db = Database(url)
    db.upgrade()
    with db.transaction() as session:
        for n, qid in enumerate(["cache-stampede", "retired-question"]):
            session.add(Drill(channel=CHANNEL, day=date(2026, 1, 5 + n), question_id=qid, status="closed",
                              ts=f"170000000{n}.1", deadline=datetime(2026, 1, 5 + n, 11, tzinfo=UTC),
                              answer_count=0, attempts=1))
    db.dispose()
    env = {"DATABASE_URL": url, "QUESTIONS_FILE": str(TEST_BANK), "SLACK_BOT_TOKEN": "xoxb-1-real-looking-token",
           "SLACK_APP_TOKEN": "xapp-1-real-looking-token", "DRILL_CHANNEL": "C0123ABCD"}
    result = CliRunner().invoke(main, ["check", "--socket"], env=env)
    assert "retired-question" in result.output and "replaces" in result.output, result.output
    assert "'cache-stampede' was asked" not in result.output
    assert result.exit_code == 0, result.output  # a warning, not an error
    strict = CliRunner().invoke(main, ["check", "--socket", "--strict"], env=env)
    assert strict.exit_code == 1
