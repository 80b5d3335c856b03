"""bot/domain/questions.py: loading the bank (one-line errors) and lint(); the shipped bank itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain.questions import Question, QuestionBank, lint, load_bank
from bot.errors import QuestionBankError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "questions.yaml"
CATEGORIES = {
    "system-design",
    "distributed-systems",
    "databases",
    "caching",
    "apis",
    "messaging",
    "reliability",
    "observability",
    "security",
    "cloud",
    "performance",
    "testing",
    "behavioural",
}
SEED_IDS = [
    "design-millions-concurrent-users",
    "cap-theorem",
    "optimise-slow-service",
    "microservice-communication",
    "api-security-microservices",
    "cloud-services-backend",
    "live-database-migrations",
    "backend-monitoring-metrics",
    "challenging-bug",
    "backend-testing-strategy",
    "caching-role",
    "prioritise-technical-debt",
]
VOCAB = ["caching-strategy", "cache-invalidation", "consistency", "transactions", "api-design", "latency"]


def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def question(qid: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": qid,
        "title": f"Title of {qid}?",
        "category": "caching",
        "difficulty": "medium",
        "tags": ["caching-strategy", "latency"],
        "guidance": words(80),
        "key_points": ["one", "two", "three"],
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def write_bank(path: Path, questions: list[dict[str, Any]], tags: list[str] | None = VOCAB) -> Path:
    doc: dict[str, Any] = {}
    if tags is not None:
        doc["tags"] = tags
    doc["questions"] = questions
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def load_error(spec: str | Path) -> str:
    with pytest.raises(QuestionBankError) as info:
        load_bank(str(spec))
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    return message


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


# -- load_bank: success ------------------------------------------------------------------------------


def test_loads_a_valid_file(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("a-one"), question("b-two", difficulty="hard")])
    bank = load_bank(str(path))
    assert bank.ids == ["a-one", "b-two"]
    assert bank.get("b-two").difficulty == "hard"  # type: ignore[union-attr]
    assert bank.get("missing") is None
    assert bank.vocabulary == frozenset(VOCAB)
    assert bank.sources["a-one"].startswith(f"{path}:")
    assert bank.sources["b-two"] == f"{path}:{line_of(path, 'id: b-two')}"


def test_categories_and_tags_are_lowercased(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("q1", category="Caching", tags=["Latency", "API-Design"])])
    q = load_bank(str(path)).get("q1")
    assert q is not None and q.category == "caching" and q.tags == ("latency", "api-design")


def test_a_folder_of_several_files_is_merged(tmp_path: Path) -> None:
    folder = tmp_path / "bank"
    folder.mkdir()
    write_bank(folder / "b.yaml", [question("from-b")], tags=["latency"])
    write_bank(folder / "a.yml", [question("from-a")], tags=["caching-strategy"])
    (folder / "notes.txt").write_text("not a bank file")
    bank = load_bank(str(folder))
    assert bank.ids == ["from-a", "from-b"]  # sorted by file name
    assert bank.vocabulary == {"latency", "caching-strategy"}
    assert bank.sources["from-a"].startswith(str(folder / "a.yml"))


def test_comma_separated_files_are_merged(tmp_path: Path) -> None:
    first = write_bank(tmp_path / "first.yaml", [question("q-one"), question("q-two")])
    second = write_bank(tmp_path / "second.yaml", [question("q-three")])
    bank = load_bank(f"{first}, {second},")
    assert bank.ids == ["q-one", "q-two", "q-three"]
    assert bank.sources["q-three"].startswith(f"{second}:")


# -- load_bank: one-line errors naming the problem ---------------------------------------------------


def test_duplicate_id_in_one_file_names_the_id_the_file_and_both_lines(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("dup"), question("other"), question("dup", title="X?")])
    message = load_error(path)
    lines = [n for n, text in enumerate(path.read_text().splitlines(), start=1) if "id: dup" in text]
    assert len(lines) == 2
    assert "'dup'" in message and "duplicate" in message
    assert str(path) in message
    assert str(lines[0]) in message and str(lines[1]) in message
    assert message.startswith(f"{path}:{lines[1]}:")


def test_id_clash_across_files_names_both_places(tmp_path: Path) -> None:
    first = write_bank(tmp_path / "first.yaml", [question("filler"), question("shared")])
    second = write_bank(tmp_path / "second.yaml", [question("shared")])
    message = load_error(f"{first},{second}")
    assert "'shared'" in message and "duplicate" in message
    assert f"{first}:{line_of(first, 'id: shared')}" in message
    assert f"{second}:{line_of(second, 'id: shared')}" in message


@pytest.mark.parametrize("missing", ["title", "category", "difficulty", "tags", "guidance", "key_points"])
def test_missing_required_field_names_the_id_and_the_field(tmp_path: Path, missing: str) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("ok-one"), question("broken", **{missing: None})])
    message = load_error(path)
    assert "'broken'" in message
    assert f"missing required field '{missing}'" in message
    assert message.startswith(f"{path}:{line_of(path, 'id: broken')}:")


def test_missing_id_names_the_question_number(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("ok-one"), question("x", id=None)])
    message = load_error(path)
    assert "question #2" in message and "missing required field 'id'" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("questions:\n  - id: a\n    title: [unclosed\n", 4),
        ('questions:\n  - id: a\n    title: "no end\n', 4),
        ("questions:\n  - id: a\n\ttitle: tab\n", 3),
        ("questions:\n  - id: a\n    title: x\n   bad: indent\n", 4),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text(text)
    message = load_error(path)
    assert "invalid YAML" in message
    assert message.startswith(f"{path}:")
    reported = int(message[len(str(path)) + 1 :].split(":", 1)[0])
    assert abs(reported - line) <= 1, message


def test_unknown_difficulty_is_named(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("q1", difficulty="impossible")])
    message = load_error(path)
    assert "'q1'" in message and "'difficulty'" in message
    assert "easy, medium, hard" in message


def test_unknown_field_is_named(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("q1", answer="secret")])
    message = load_error(path)
    assert "'q1'" in message and "unknown field 'answer'" in message


def test_bad_id_is_named(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("Not A Slug")])
    message = load_error(path)
    assert "'Not A Slug'" in message and "slug" in message


@pytest.mark.parametrize(
    "text",
    [
        "- id: a\n  title: b\n",  # a bare list, no questions: key
        "questions: {id: a}\n",
        "questions: just text\n",
        "tags: [a]\n",
        "",
        "just a string\n",
    ],
)
def test_not_a_list_of_questions(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text(text)
    message = load_error(path)
    assert str(path) in message and "'questions:' list" in message


def test_a_question_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text("questions:\n  - just a string\n")
    assert "question #1 is not a mapping" in load_error(path)


def test_a_key_point_with_a_colon_that_yaml_reads_as_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text(
        "questions:\n  - id: q1\n    title: t\n    category: caching\n    difficulty: easy\n"
        "    tags: [latency]\n    guidance: g\n    key_points:\n      - Note: a colon makes this a mapping\n"
    )
    message = load_error(path)
    assert "'q1'" in message and "key_points" in message and "__line__" not in message


def test_bad_tags_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text("tags: latency\nquestions: []\n")
    assert "'tags:' must be a list" in load_error(path)


def test_missing_file_and_empty_folder_and_empty_bank(tmp_path: Path) -> None:
    assert "not found" in load_error(tmp_path / "nope.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .yaml or .yml files" in load_error(empty)
    assert "QUESTIONS_FILE" in load_error(" , ")
    no_questions = tmp_path / "none.yaml"
    no_questions.write_text("questions: []\n")
    assert "no questions" in load_error(no_questions)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_bytes(b"questions:\n  - id: caf\xe9\n")
    assert "cannot read" in load_error(path)


# -- lint ----------------------------------------------------------------------------------------------


def lint_of(tmp_path: Path, *questions: dict[str, Any], tags: list[str] | None = VOCAB) -> list[str]:
    return lint(load_bank(str(write_bank(tmp_path / "bank.yaml", list(questions), tags=tags))))


def test_a_clean_bank_has_no_problems(tmp_path: Path) -> None:
    assert (
        lint_of(tmp_path, question("q1"), question("q2", guidance=words(60)), question("q3", guidance=words(200))) == []
    )


@pytest.mark.parametrize("count", [1, 59, 201, 400])
def test_guidance_word_count_outside_60_200(tmp_path: Path, count: int) -> None:
    problems = lint_of(tmp_path, question("ok"), question("wordy", guidance=words(count)))
    assert len(problems) == 1
    assert "'wordy'" in problems[0] and f"{count} words" in problems[0] and "60-200" in problems[0]


def test_tag_not_in_vocabulary(tmp_path: Path) -> None:
    problems = lint_of(tmp_path, question("q1", tags=["latency", "blockchain"]))
    assert len(problems) == 1
    assert "'q1'" in problems[0] and "'blockchain'" in problems[0] and "vocabulary" in problems[0]


def test_duplicate_titles_ignore_case_and_spacing(tmp_path: Path) -> None:
    problems = lint_of(
        tmp_path,
        question("first", title="What is  CAP?"),
        question("second", title="what is cap?"),
    )
    assert len(problems) == 1
    assert "'second'" in problems[0] and "duplicate title" in problems[0] and "'first'" in problems[0]


@pytest.mark.parametrize("count", [1, 2, 7, 10])
def test_key_points_count_outside_3_6(tmp_path: Path, count: int) -> None:
    points = [f"point {i}" for i in range(count)]
    problems = lint_of(tmp_path, question("q1", key_points=points))
    assert len(problems) == 1
    assert "'q1'" in problems[0] and f"{count} key_points" in problems[0] and "3-6" in problems[0]


@pytest.mark.parametrize("count", [3, 6])
def test_key_points_count_at_the_bounds_is_fine(tmp_path: Path, count: int) -> None:
    assert lint_of(tmp_path, question("q1", key_points=[f"point {i}" for i in range(count)])) == []


def test_tag_count_repeats_and_follow_ups(tmp_path: Path) -> None:
    problems = lint_of(
        tmp_path,
        question("one-tag", tags=["latency"]),
        question("six-tags", tags=VOCAB),
        question("repeat", tags=["latency", "latency"]),
        question("chatty", follow_ups=["a?", "b?", "c?", "d?"]),
    )
    assert any("'one-tag'" in p and "1 tags" in p for p in problems)
    assert any("'six-tags'" in p and "6 tags" in p for p in problems)
    assert any("'repeat'" in p and "repeats a tag" in p for p in problems)
    assert any("'chatty'" in p and "4 follow_ups" in p for p in problems)
    assert len(problems) == 4


def test_lint_problems_name_the_file_and_line(tmp_path: Path) -> None:
    path = write_bank(tmp_path / "bank.yaml", [question("ok"), question("bad", guidance=words(5))])
    (problem,) = lint(load_bank(str(path)))
    assert problem.startswith(f"{path}:{line_of(path, 'id: bad')}: question 'bad'")
    assert "\n" not in problem


def test_without_a_vocabulary_any_tag_is_accepted(tmp_path: Path) -> None:
    assert lint_of(tmp_path, question("q1", tags=["anything", "goes"]), tags=None) == []


# -- the shipped bank ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> QuestionBank:
    return load_bank(str(SHIPPED))


def test_shipped_bank_passes_lint(shipped: QuestionBank) -> None:
    assert shipped.vocabulary, "the shipped bank must declare a tags: vocabulary so lint checks tags"
    assert lint(shipped) == []


def test_shipped_bank_has_at_least_150_questions(shipped: QuestionBank) -> None:
    assert len(shipped.questions) >= 150
    assert len(set(shipped.ids)) == len(shipped.ids)


def test_shipped_bank_covers_the_13_categories(shipped: QuestionBank) -> None:
    assert set(shipped.categories) == CATEGORIES
    thin = {c: n for c, n in shipped.categories.items() if n < 8}
    assert not thin, f"categories with fewer than 8 questions: {thin}"


def test_shipped_bank_has_all_three_difficulties(shipped: QuestionBank) -> None:
    assert set(shipped.difficulties) == {"easy", "medium", "hard"}
    assert all(n >= 10 for n in shipped.difficulties.values())


@pytest.mark.parametrize("qid", SEED_IDS)
def test_shipped_bank_has_the_seed_questions(shipped: QuestionBank, qid: str) -> None:
    q = shipped.get(qid)
    assert isinstance(q, Question), f"seed question {qid!r} is missing"
    assert q.category in CATEGORIES


def test_shipped_bank_follows_the_contributor_length_rules(shipped: QuestionBank) -> None:
    for q in shipped.questions:
        assert len(q.id) <= 60, q.id
        assert len(q.title) <= 300, q.id
        assert all(len(point) <= 80 for point in q.key_points), q.id


# -- inspect_bank: every structural problem, and the valid rest ------------------------------------------


def test_inspect_bank_reports_every_structural_problem_and_keeps_the_valid_questions(tmp_path: Path) -> None:
    from bot.domain.questions import inspect_bank

    path = write_bank(
        tmp_path / "bank.yaml",
        [
            question("good-one"),
            question("no-title", title=None),
            question("bad-level", difficulty="brutal", tags="not-a-list"),
            question("good-one", title="Twice?"),
            question("good-two", title="Another?"),
        ],
    )
    bank, problems = inspect_bank(str(path))
    assert bank is not None and bank.ids == ["good-one", "good-two"]
    assert len(problems) == 4, problems
    assert "'no-title'" in problems[0] and "missing required field 'title'" in problems[0]
    assert "'bad-level'" in problems[1] and "difficulty" in problems[1]
    assert "'bad-level'" in problems[2] and "tags" in problems[2]
    assert "duplicate question id 'good-one'" in problems[3]
    assert load_error(path) == problems[0]  # load_bank still stops at the first
