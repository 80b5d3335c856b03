"""bot/blocks.py: Block Kit builders escape outside text and stay within Slack's limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.blocks import (
    drill_message,
    escape,
    help_message,
    leaderboard_message,
    practice_message,
    reveal_message,
    unknown_filter_message,
)
from bot.domain.questions import Question, QuestionBank
from bot.domain.streaks import Streak

DEADLINE = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
HOSTILE = "<!channel> <@U0BOSS> <https://evil.example|click> & <!here>"


def make_question(**overrides: Any) -> Question:
    data: dict[str, Any] = {
        "id": "cache-stampede",
        "title": "How do you stop a cache stampede?",
        "category": "caching",
        "difficulty": "medium",
        "tags": ("caching-strategy", "latency"),
        "guidance": "Coalesce requests, refresh early, serve stale while one worker refreshes.",
        "key_points": ("single flight", "early refresh", "TTL jitter"),
        "follow_ups": ("Across many hosts?",),
    }
    data.update(overrides)
    return Question(**data)


def huge_question() -> Question:
    guidance = ("Partition tolerance is not optional in a real network & <!channel> says so. " * 300)[:20_000]
    assert len(guidance) == 20_000
    return make_question(
        title="T" * 5000,
        guidance=guidance,
        key_points=tuple(f"key point number {i} <@U{i:05d}>" for i in range(200)),
        follow_ups=tuple(f"follow-up {i}?" for i in range(50)),
    )


def texts(node: Any) -> Iterator[str]:
    """Every string value in a message (fallback text and every block)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from texts(value)


def assert_within_limits(message: dict[str, Any]) -> None:
    blocks = message["blocks"]
    assert isinstance(message["text"], str) and message["text"].strip()
    assert len(message["text"]) <= 4000
    assert 1 <= len(blocks) <= 50, len(blocks)
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= 150
        elif block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < len(block["text"]["text"]) <= 3000
        elif block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert 0 < len(element["text"]) <= 3000
        elif block["type"] == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for element in block["elements"]:
                assert element["type"] == "button"
                assert 0 < len(element["text"]["text"]) <= 75
                # An empty value is left out of the JSON (slack_sdk): the same to Slack and to the listeners.
                assert len(element.get("value", "")) <= 2000 and len(element["action_id"]) <= 255
        elif block["type"] == "divider":
            pass
        else:
            raise AssertionError(f"unexpected block type {block['type']}")


def assert_no_live_markup(message: dict[str, Any], allowed: tuple[str, ...] = ()) -> None:
    """No '<' survives except the bot's own markup (e.g. '<!date^')."""
    for text in texts(message):
        for match in re.finditer("<", text):
            assert text.startswith(allowed, match.start()) if allowed else False, (
                f"live markup in {text[max(0, match.start() - 20) : match.start() + 40]!r}"
            )


# -- escape ---------------------------------------------------------------------------------------------


def test_escape_the_three_control_characters() -> None:
    assert escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert escape("<!channel>") == "&lt;!channel&gt;"
    assert escape("<@U123>") == "&lt;@U123&gt;"


def test_escape_ampersand_first_so_entities_are_shown_literally() -> None:
    assert escape("&lt;") == "&amp;lt;"
    assert escape("&&") == "&amp;&amp;"


def test_escape_leaves_everything_else() -> None:
    text = "*bold* _it_ `code` ~s~ \"quotes\" 'q' émoji :tada: 100%"
    assert escape(text) == text
    assert escape("") == ""


# -- drill_message ----------------------------------------------------------------------------------------


def test_drill_message_shows_title_meta_and_the_deadline_in_the_readers_zone() -> None:
    message = drill_message(make_question(), deadline=DEADLINE)
    assert_within_limits(message)
    joined = "\n".join(texts(message["blocks"]))
    assert "How do you stop a cache stampede?" in joined
    assert "caching" in joined and "medium" in joined
    assert f"<!date^{int(DEADLINE.timestamp())}^" in joined
    assert "Mon 05 Jan 16:00 UTC" in joined  # the fallback inside the date token
    assert "How do you stop a cache stampede?" in message["text"]


def test_drill_message_does_not_reveal_the_guidance() -> None:
    message = drill_message(make_question(), deadline=DEADLINE)
    everything = "\n".join(texts(message))
    assert "Coalesce requests" not in everything
    assert "single flight" not in everything


def test_closed_drill_message_counts_answers_and_has_no_deadline_prompt() -> None:
    message = drill_message(make_question(), deadline=DEADLINE, closed=True, answered=7)
    assert_within_limits(message)
    joined = "\n".join(texts(message))
    assert "7 answered" in joined
    assert "<!date^" not in joined
    assert "Reply in this thread" not in joined


def test_drill_message_escapes_user_provided_text() -> None:
    message = drill_message(make_question(title=HOSTILE, category="caching<!here>"), deadline=DEADLINE)
    assert_within_limits(message)
    assert_no_live_markup(message, allowed=("<!date^",))
    everything = "\n".join(texts(message))
    assert "&lt;!channel&gt;" in everything
    assert "<!channel>" not in everything and "<!here>" not in everything and "<@U0BOSS>" not in everything


def test_drill_message_with_huge_question_stays_within_limits() -> None:
    message = drill_message(huge_question(), deadline=DEADLINE)
    assert_within_limits(message)
    assert "<!date^" in "\n".join(texts(message["blocks"]))


# -- reveal_message ---------------------------------------------------------------------------------------


def test_reveal_message_shows_guidance_key_points_follow_ups_and_count() -> None:
    message = reveal_message(make_question(), answered=3)
    assert_within_limits(message)
    joined = "\n".join(texts(message["blocks"]))
    assert "Coalesce requests" in joined
    assert "• single flight" in joined and "• TTL jitter" in joined
    assert "Across many hosts?" in joined
    assert "3 answered" in joined


def test_reveal_message_with_a_20000_character_guidance_and_200_key_points() -> None:
    message = reveal_message(huge_question(), answered=12)
    assert_within_limits(message)
    assert_no_live_markup(message)
    everything = "\n".join(texts(message))
    assert "<!channel>" not in everything and "<@U00001>" not in everything
    assert "&lt;!channel&gt;" in everything
    assert message["blocks"][0]["type"] == "header"
    assert "12 answered" in everything


def test_a_guidance_too_long_for_50_blocks_is_shortened_with_a_note() -> None:
    message = reveal_message(make_question(guidance="word " * 60_000), answered=1)
    assert_within_limits(message)
    assert len(message["blocks"]) == 50
    notes = [b["elements"][0]["text"] for b in message["blocks"] if b["type"] == "context"]
    assert any("shortened" in note for note in notes)
    # The participation line survives the shortening.
    assert "1 answered" in message["blocks"][-1]["elements"][0]["text"]


def test_a_long_guidance_is_split_without_losing_text() -> None:
    guidance = " ".join(f"sentence{i} about <quorums> & latency." for i in range(400))  # ~14k chars
    message = reveal_message(make_question(guidance=guidance), answered=0)
    assert_within_limits(message)
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    guidance_sections = [s for s in sections if "sentence" in s]
    assert len(guidance_sections) >= 5
    rebuilt = " ".join(guidance_sections)
    assert rebuilt.split() == escape(guidance).split()


def test_a_guidance_without_spaces_is_still_cut_to_fit() -> None:
    message = reveal_message(make_question(guidance="x" * 9500), answered=0)
    assert_within_limits(message)
    xs = "".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "xxx" in b["text"]["text"])
    assert xs == "x" * 9500


# -- other builders -----------------------------------------------------------------------------------------


def test_practice_message_escapes_and_fits() -> None:
    message = practice_message(make_question(title=HOSTILE, tags=("a<b", "latency")))
    assert_within_limits(message)
    assert_no_live_markup(message)


def test_unknown_filter_message_escapes_what_the_user_typed() -> None:
    bank = QuestionBank((make_question(),))
    message = unknown_filter_message(["<!channel>", "<@U1>", "x" * 5000], bank)
    assert_within_limits(message)
    assert_no_live_markup(message)
    assert "&lt;!channel&gt;" in "\n".join(texts(message))


def test_help_message_fits_for_a_large_bank() -> None:
    questions = tuple(make_question(id=f"q{i}", category=f"category-{i}") for i in range(300))
    message = help_message(QuestionBank(questions))
    assert_within_limits(message)
    assert "/interview-question" in message["text"]


@pytest.mark.parametrize("count", [1, 25, 26, 100])
def test_leaderboard_message_stays_within_limits(count: int) -> None:
    streaks = [Streak(f"U{i:08d}", current=100 - i, longest=200, total=1000 + i) for i in range(count)]
    message = leaderboard_message(streaks)
    assert_within_limits(message)
    joined = "\n".join(texts(message["blocks"]))
    shown = re.findall(r"^(\d+)\. <@(U\d+)>", joined, flags=re.MULTILINE)
    assert shown == [(str(i + 1), f"U{i:08d}") for i in range(min(count, 25))]  # in the given order
    assert "1. <@U00000000>: current streak *100*, longest 200, 1000 answers" in joined
    if count > 25:
        assert f"…and {count - 25} more" in joined
        assert f"<@U{25:08d}>" not in joined
    else:
        assert "more" not in joined


def test_leaderboard_message_with_no_answers() -> None:
    message = leaderboard_message([])
    assert_within_limits(message)
    assert "No answers yet" in message["text"]
