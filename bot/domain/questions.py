"""The question bank: its format, loading it from YAML, and picking from it.

A bank is one or more YAML files, each with a top-level `questions:` list and an optional `tags:`
vocabulary. QUESTIONS_FILE names a file, a folder (every *.yaml / *.yml in it, sorted by name) or several
of either separated by commas; the files are merged, and an id defined twice is an error that names both
places. Structure is enforced at load (`Question`; `inspect_bank()` reports every structural problem instead
of the first); the editorial rules (lengths, tag vocabulary, duplicate titles) are reported by `lint()`,
which `drillbot check` prints as warnings.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import QuestionBankError

__all__ = [
    "Question",
    "QuestionBank",
    "inspect_bank",
    "lint",
    "load_bank",
    "orphaned_ids",
    "replaces_problems",
]

Difficulty = Literal["easy", "medium", "hard"]
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=80)
    title: str = Field(min_length=1)
    category: str = Field(min_length=1)
    difficulty: Difficulty
    tags: tuple[str, ...] = Field(min_length=1)
    guidance: str = Field(min_length=1)
    key_points: tuple[str, ...] = Field(min_length=1)
    follow_ups: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    # Ids this question took over (renamed or merged): rotation counts their past drills as its own.
    replaces: tuple[str, ...] = ()
    # Set only on a drill's stored copy whose id was gone from the bank when the copy was backfilled.
    missing: bool = False

    def snapshot(self) -> str:
        """The question as a drill stores it (JSON): everything the reveal and the other views show."""
        return self.model_dump_json(exclude={"replaces", "missing"})

    @classmethod
    def from_snapshot(cls, text: str | None, question_id: str) -> Question:
        """A drill's stored copy; a backfill marker (or no copy) becomes a placeholder that still reveals."""
        data: dict[str, Any] = {}
        if text:
            try:
                loaded = json.loads(text)
                data = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                data = {}
        if data and not data.get("missing"):
            try:
                return cls.model_validate(data)
            except ValidationError:
                pass
        return cls.model_construct(
            id=question_id,
            title=f"Question {question_id!r} (no longer in the question bank)",
            category="unknown",
            difficulty="medium",
            tags=("unknown",),
            guidance="This question was removed from the question bank before drillbot kept a copy of it, "
            "so its guidance cannot be shown.",
            key_points=(),
            follow_ups=(),
            references=(),
            replaces=(),
            missing=True,
        )

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"{value!r} is not a slug (lowercase letters, digits and dashes)")
        return value

    @field_validator("category", mode="after")
    @classmethod
    def _lower_category(cls, value: str) -> str:
        return value.lower()

    @field_validator("tags", mode="after")
    @classmethod
    def _lower_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(tag.lower() for tag in value)


@dataclass(frozen=True)
class QuestionBank:
    questions: tuple[Question, ...]
    vocabulary: frozenset[str] = frozenset()
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # id -> "file:line"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {q.id: q for q in self.questions})

    def get(self, question_id: str) -> Question | None:
        by_id: dict[str, Question] = object.__getattribute__(self, "_by_id")
        return by_id.get(question_id)

    def current_id(self, question_id: str) -> str:
        """The id a past drill's question goes by now: itself, or the question that `replaces` it."""
        if self.get(question_id) is not None:
            return question_id
        for question in self.questions:
            if question_id in question.replaces:
                return question.id
        return question_id

    @property
    def ids(self) -> list[str]:
        return [q.id for q in self.questions]

    @property
    def categories(self) -> Counter[str]:
        return Counter(q.category for q in self.questions)

    @property
    def tags(self) -> Counter[str]:
        return Counter(tag for q in self.questions for tag in q.tags)

    @property
    def difficulties(self) -> Counter[str]:
        return Counter(q.difficulty for q in self.questions)

    def matching(self, terms: Iterable[str]) -> list[Question]:
        """Questions matching every term; a term names a category, a tag or a difficulty."""
        wanted = [term.lower() for term in terms]
        return [q for q in self.questions if all(_matches(q, term) for term in wanted)]

    def unknown_terms(self, terms: Iterable[str]) -> list[str]:
        known = set(self.categories) | set(self.tags) | set(DIFFICULTIES)
        return [term for term in terms if term.lower() not in known]

    def pick(self, terms: Sequence[str] = (), rng: random.Random | None = None) -> Question | None:
        candidates = self.matching(terms)
        return (rng or random.Random()).choice(candidates) if candidates else None


def _matches(question: Question, term: str) -> bool:
    return term in (question.category, question.difficulty) or term in question.tags


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping, so errors can name it."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def bank_files(spec: str) -> list[Path]:
    """Expand QUESTIONS_FILE (a file, a folder, or several separated by commas) into files."""
    problems: list[str] = []
    files = _expand(spec, problems)
    if problems:
        raise QuestionBankError(problems[0])
    return files


def _expand(spec: str, problems: list[str]) -> list[Path]:
    files: list[Path] = []
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    for part in parts:
        path = Path(part)
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                problems.append(f"{path}: folder has no .yaml or .yml files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: question bank file not found (QUESTIONS_FILE)")
    if not parts:
        problems.append("QUESTIONS_FILE is empty; point it at questions.yaml")
    return files


def load_bank(spec: str) -> QuestionBank:
    """The bank of QUESTIONS_FILE; the first structural problem is a QuestionBankError naming file and line."""
    bank, problems = inspect_bank(spec)
    if problems:
        raise QuestionBankError(problems[0])
    assert bank is not None
    return bank


def inspect_bank(spec: str) -> tuple[QuestionBank | None, list[str]]:
    """Every structural problem of the bank, one line each (file:line, question, field), in file order,
    plus a bank of the questions that are valid (None when there are none), so `drillbot check` can report
    all of them in one run and still lint the rest."""
    problems: list[str] = []
    questions: list[Question] = []
    vocabulary: set[str] = set()
    sources: dict[str, str] = {}
    for path in _expand(spec, problems):
        file_questions, file_vocab = _load_file(path, problems)
        for question, where in file_questions:
            if question.id in sources:
                problems.append(
                    f"{where}: duplicate question id {question.id!r} (first defined at {sources[question.id]})"
                )
                continue
            sources[question.id] = where
            questions.append(question)
        vocabulary |= file_vocab
    if not questions:
        if not problems:
            problems.append(f"{spec}: the question bank has no questions")
        return None, problems
    bank = QuestionBank(tuple(questions), frozenset(vocabulary), sources)
    return bank, problems + replaces_problems(bank)


def _load_file(path: Path, problems: list[str]) -> tuple[list[tuple[Question, str]], set[str]]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problems.append(f"{path}{line}: invalid YAML ({exc.problem or exc.context})")
        return [], set()
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"{path}: cannot read the file ({exc.__class__.__name__})")
        return [], set()
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        problems.append(f"{path}: expected a top-level 'questions:' list")
        return [], set()
    vocab_raw = data.get("tags", [])
    if not isinstance(vocab_raw, list) or not all(isinstance(t, str) for t in vocab_raw):
        problems.append(f"{path}: 'tags:' must be a list of tag names")
        vocab_raw = []
    loaded: list[tuple[Question, str]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(data["questions"], start=1):
        if not isinstance(item, dict):
            problems.append(f"{path}: question #{index} is not a mapping of fields")
            continue
        line = item.pop("__line__", 0)
        where = f"{path}:{line}"
        label = f"question {item['id']!r}" if isinstance(item.get("id"), str) else f"question #{index}"
        if isinstance(item.get("id"), str) and item["id"] in seen:
            problems.append(f"{where}: duplicate question id {item['id']!r} (first defined at line {seen[item['id']]})")
            continue
        try:
            question = Question.model_validate(item)
        except ValidationError as exc:
            problems.extend(f"{where}: {label}: {_describe(error)}" for error in exc.errors())
            continue
        seen[question.id] = line
        loaded.append((question, where))
    return loaded, {t.lower() for t in vocab_raw}


def _describe(error: Any) -> str:
    field_name = ".".join(str(p) for p in error["loc"]) or "question"
    if error["type"] == "missing":
        return f"missing required field {field_name!r}"
    if error["type"] == "extra_forbidden":
        return f"unknown field {field_name!r}"
    if error["type"] == "literal_error":
        return f"field {field_name!r} must be one of easy, medium, hard"
    return f"field {field_name!r}: {str(error['msg']).removeprefix('Value error, ')}"


def replaces_problems(bank: QuestionBank) -> list[str]:
    """Errors in `replaces:`: an id that is still in the bank, or one claimed by two questions."""
    problems: list[str] = []
    claimed: dict[str, str] = {}
    for q in bank.questions:
        where = f"{bank.sources.get(q.id, '?')}: question {q.id!r}"
        if q.missing:
            problems.append(f"{where}: 'missing' is not a field of the bank (drillbot sets it on stored copies)")
        for old in q.replaces:
            if bank.get(old) is not None:
                problems.append(f"{where}: replaces {old!r}, which is still in the bank; remove one of them")
            elif old in claimed:
                problems.append(
                    f"{where}: replaces {old!r}, which question {claimed[old]!r} already replaces; keep one claim"
                )
            else:
                claimed[old] = q.id
    return problems


def orphaned_ids(bank: QuestionBank, used_ids: Iterable[str]) -> list[str]:
    """Ids past drills used that the bank no longer has and no question `replaces` (rotation forgets them)."""
    return sorted({qid for qid in used_ids if bank.current_id(qid) == qid and bank.get(qid) is None})


def lint(bank: QuestionBank) -> list[str]:
    """Editorial rules for a curated bank; each problem is one line naming the question and the rule."""
    problems: list[str] = []
    titles: dict[str, str] = {}
    for q in bank.questions:
        where = f"{bank.sources.get(q.id, '?')}: question {q.id!r}"
        words = len(q.guidance.split())
        if not 60 <= words <= 200:
            problems.append(f"{where}: guidance has {words} words; write 60-200")
        if not 2 <= len(q.tags) <= 5:
            problems.append(f"{where}: has {len(q.tags)} tags; use 2-5")
        if not 3 <= len(q.key_points) <= 6:
            problems.append(f"{where}: has {len(q.key_points)} key_points; use 3-6")
        if len(q.follow_ups) > 3:
            problems.append(f"{where}: has {len(q.follow_ups)} follow_ups; use at most 3")
        if len(set(q.tags)) != len(q.tags):
            problems.append(f"{where}: repeats a tag")
        if bank.vocabulary:
            unknown = sorted(set(q.tags) - bank.vocabulary)
            if unknown:
                problems.append(f"{where}: tag {unknown[0]!r} is not in the tags: vocabulary")
        key = " ".join(q.title.lower().split())
        if key in titles:
            problems.append(f"{where}: duplicate title (same as question {titles[key]!r})")
        titles.setdefault(key, q.id)
    return problems
