"""What counts as an answer: the one place that decides whether a Slack message is a person's reply, and
where an answer comes from."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

__all__ = ["ANSWER_SUBTYPES", "FOLLOW_UP_SUBTYPES", "AnswerSource", "concerns_answers", "is_person_reply"]


class AnswerSource(enum.StrEnum):
    """Where an answer was written."""

    THREAD = "thread"  # a reply in the drill's thread, public in Slack
    MODAL = "modal"  # a sealed answer, private until the reveal

# Plain replies, replies also sent to the channel, and replies with a file are all answers.
ANSWER_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})
# An edit or a delete may change an answer already stored.
FOLLOW_UP_SUBTYPES = frozenset({"message_changed", "message_deleted"})


def is_person_reply(message: Mapping[str, Any], bot_user_id: str | None) -> bool:
    """A threaded reply written by a person: not a bot, not this bot, not the thread's parent."""
    user = message.get("user")
    thread_ts = message.get("thread_ts")
    return (
        isinstance(user, str)
        and bool(user)
        and user != bot_user_id
        and not message.get("bot_id")
        and (message.get("subtype") is None or isinstance(message.get("subtype"), str))
        and message.get("subtype") in ANSWER_SUBTYPES
        and isinstance(thread_ts, str)
        and isinstance(message.get("ts"), str)
        and thread_ts != message.get("ts")
    )


def concerns_answers(event: Mapping[str, Any]) -> bool:
    """Could this `message` event change an answer? An edit, a delete, or a person's thread reply may; top-level
    chatter, bot messages, joins and every other subtype never do.

    The answer path ignores, before any database work, every message this says False to, so the HTTP edge
    acknowledges those itself without dispatching them (most of a busy channel's traffic). This bot's own
    user id is not known there: a person's reply it wrote without a bot id still goes to the listener.
    """
    subtype = event.get("subtype")
    return (isinstance(subtype, str) and subtype in FOLLOW_UP_SUBTYPES) or is_person_reply(event, None)
