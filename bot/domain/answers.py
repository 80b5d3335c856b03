"""What counts as an answer: the one place that decides whether a Slack message is a person's reply."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ANSWER_SUBTYPES", "is_person_reply"]

# Plain replies, replies also sent to the channel, and replies with a file are all answers.
ANSWER_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})


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
