"""Answers: thread replies, their edits and deletes, sealed answers, and self-ratings.

Every path asks `bot.domain.lifecycle.accepts_answer` (or its sealed variant) and writes under a share
lock on the drill row, so an answer and a streak fold or a reveal claim of the same drill take turns. A
change to history the stored streaks already include (a late redelivery, a withdrawn answer) only asks
for a rebuild (`repo.request_streak_rebuild`); it never rewrites other drills' rows.

Thread replies, their edits and deletes run on a bare Core connection (`Database.begin()`): a reply to an
open drill is one prepared `INSERT ... SELECT` with the same rule in SQL (`repo.insert_answer`), stored
before Slack gets its 200. Anything else (no such drill, after the deadline, a drill already folded into
the streaks, a drill still being posted) takes a second look at the drill row and decides in Python.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from bot.domain.answers import is_person_reply
from bot.domain.lifecycle import accepts_answer, accepts_sealed_answer
from bot.domain.practice import RATINGS
from bot.domain.questions import Question
from bot.drills.loop import Loop, clean_text, slack_ts_to_datetime
from bot.errors import RetryLater
from storage import repo
from storage.models import Drill

__all__ = ["RECORDED", "Answers", "SealedResult"]

log = logging.getLogger(__name__)

RECORDED = "answer recorded"


class SealedResult(StrEnum):
    STORED = "stored"
    EMPTY = "empty"
    GONE = "gone"
    CLOSED = "closed"


class Answers:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def handle_message_event(self, event: Mapping[str, Any], bot_user_id: str | None) -> str:
        """Record what a `message` event means for answers; returns a short outcome for the log."""
        channel = event.get("channel")
        if not isinstance(channel, str):
            return "ignored: no channel"
        subtype = event.get("subtype")
        if subtype == "message_changed":
            message = event.get("message")
            if not isinstance(message, Mapping):
                return "ignored: edit without message"
            return self._record_edit(channel, message, event, bot_user_id)
        if subtype == "message_deleted":
            return self._record_delete(channel, event)
        return self._record_reply(channel, event, bot_user_id)

    def record_replies(
        self, messages: Sequence[Mapping[str, Any]], bot_user_id: str | None, *, wait: bool = True
    ) -> list[str | RetryLater]:
        """Several `message` events that are people's thread replies (`is_person_reply`), in one transaction:
        the HTTP edge's group commit (`bot.intake`). One outcome per message, in order: what
        `handle_message_event` would have returned, or the `RetryLater` it would have raised. Any other error
        rolls the whole group back and is raised; nothing of it is stored. `wait=False`: `WouldWait` (and
        nothing done) rather than wait for the database (`Database.begin`)."""
        outcomes: list[str | RetryLater] = []
        with self.loop.db.begin(wait=wait) as conn:
            for message in messages:
                try:
                    outcomes.append(self._reply_in(conn, str(message.get("channel")), message, bot_user_id))
                except RetryLater as exc:  # nothing written for it (decided on reads): the others still commit
                    outcomes.append(exc)
        if self.loop.metrics:
            for message, outcome in zip(messages, outcomes, strict=True):
                if outcome == RECORDED:
                    self.loop.metrics.answer_recorded(str(message.get("channel")))
        return outcomes

    def _record_reply(self, channel: str, message: Mapping[str, Any], bot_user_id: str | None) -> str:
        # Not a person's thread reply: decided here, before any database work (the HTTP edge acknowledges
        # most such messages itself, by the same rule, and never dispatches them).
        if not is_person_reply(message, bot_user_id):
            return "ignored: not a person's thread reply"
        with self.loop.db.begin() as conn:
            outcome = self._reply_in(conn, channel, message, bot_user_id)
        if outcome == RECORDED and self.loop.metrics:
            self.loop.metrics.answer_recorded(channel)
        return outcome

    def _reply_in(self, conn: Any, channel: str, message: Mapping[str, Any], bot_user_id: str | None) -> str:
        """A thread reply's outcome, decided and stored on `conn` (an open transaction)."""
        if not is_person_reply(message, bot_user_id):
            return "ignored: not a person's thread reply"
        written = slack_ts_to_datetime(message["ts"])
        if written is None:
            return "ignored: bad ts"
        thread_ts = str(message["thread_ts"])
        reply = repo.ThreadReply(
            channel, thread_ts, str(message["ts"]), str(message["user"]), clean_text(message.get("text")), written,
            self.loop.clock(),
        )
        # The usual case, one statement: an answer to a drill that takes it and is not folded yet.
        if repo.insert_answer(conn, reply=reply):
            return RECORDED
        # Another thread, a closed window, a duplicate, or a drill folded already: one more read says.
        seen = repo.thread_lookup(conn, channel, thread_ts, slack_ts_to_datetime(thread_ts))
        if seen.drill is None:
            if seen.posting:
                # The drill may be this very thread, posted but not yet confirmed: let Slack redeliver.
                raise RetryLater(f"a drill in {channel} is still being posted")
            return "ignored: not a drill thread"
        if not accepts_answer(seen.drill.status, seen.drill.deadline, written):
            return "ignored: after the deadline"
        # Accepted, so a duplicate or a drill folded into the streaks: decide under the drill's lock.
        drill = repo.answer_target(conn, channel, thread_ts)
        if drill is None:
            return "ignored: not a drill thread"
        if not accepts_answer(drill.status, drill.deadline, written):
            return "ignored: after the deadline"
        return RECORDED if self._insert_folded(conn, drill, reply) else "duplicate ignored"

    def _insert_folded(self, conn: Any, drill: repo.AnswerTarget, reply: repo.ThreadReply) -> bool:
        """Store an accepted answer whatever the drill's fold state; a drill already folded into the stored
        streaks (a late redelivery) gets a rebuild request too. The drill row is share-locked already."""
        new = repo.insert_answer(conn, reply=reply, folded=True)
        if new and drill.streak_applied:
            repo.request_streak_rebuild(conn, drill.channel, self.loop.clock())
        return new

    def _record_edit(
        self, channel: str, message: Mapping[str, Any], event: Mapping[str, Any], bot_user_id: str | None
    ) -> str:
        if not is_person_reply(message, bot_user_id):
            return "ignored: not a person's thread reply"
        edited = slack_ts_to_datetime(event.get("event_ts") or event.get("ts"))
        thread_ts = str(message.get("thread_ts"))
        with self.loop.db.begin() as conn:
            drill = repo.answer_target(conn, channel, thread_ts)
            if drill is None:
                return "ignored: not a drill thread"
            if edited is None or not accepts_answer(drill.status, drill.deadline, edited):
                return "ignored: edited after the deadline"
            text = clean_text(message.get("text"))
            now = self.loop.clock()
            if repo.set_answer_text(conn, channel=channel, message_ts=str(message["ts"]), text=text, now=now):
                return "answer updated"
            written = slack_ts_to_datetime(message["ts"])
            if written is None or not accepts_answer(drill.status, drill.deadline, written):
                return "ignored: after the deadline"
            reply = repo.ThreadReply(channel, thread_ts, str(message["ts"]), str(message["user"]), text, written, now)
            new = self._insert_folded(conn, drill, reply)
        if new and self.loop.metrics:
            self.loop.metrics.answer_recorded(channel)
        return "answer recorded from edit"

    def _record_delete(self, channel: str, event: Mapping[str, Any]) -> str:
        previous = event.get("previous_message")
        deleted_ts = event.get("deleted_ts") or (previous.get("ts") if isinstance(previous, Mapping) else None)
        if not isinstance(deleted_ts, str):
            return "ignored: delete without ts"
        deleted_at = slack_ts_to_datetime(event.get("event_ts") or event.get("ts")) or self.loop.clock()
        with self.loop.db.begin() as conn:
            drill = repo.answer_target_of(conn, channel, deleted_ts)
            if drill is None:
                return "ignored: not an answer"
            # Withdrawn while the drill took answers: it stops counting. Deleted later: the text is erased
            # (the person's wish) but the participation stays, as the reveal already counted it.
            keep = not accepts_answer(drill.status, drill.deadline, deleted_at)
            changed = repo.withdraw_answer(
                conn, channel=channel, message_ts=deleted_ts, now=self.loop.clock(), keep_count=keep
            )
            if changed and not keep and drill.streak_applied:
                repo.request_streak_rebuild(conn, channel, self.loop.clock())
        return "answer text erased" if keep else "answer withdrawn"

    # -- sealed answers and self-ratings ---------------------------------------------------------

    def sealed_answer_form(self, drill_id: int, user_id: str) -> tuple[Question, str] | SealedResult:
        """The question and the person's current sealed answer, or why they cannot answer."""
        with self.loop.db.transaction() as session:
            drill = session.get(Drill, drill_id)
            if drill is None or drill.ts is None:
                return SealedResult.GONE
            if not accepts_sealed_answer(drill.status, drill.deadline, self.loop.clock()):
                return SealedResult.CLOSED
            current = next((text for user, text in repo.modal_answers(session, drill_id) if user == user_id), "")
            question = self.loop.question_of(drill)
        return question, current

    def submit_sealed_answer(self, drill_id: int, user_id: str, text: str) -> SealedResult:
        """Store a sealed answer (replacing the person's earlier one)."""
        text = clean_text(text).strip()
        if not text:
            return SealedResult.EMPTY
        now = self.loop.clock()
        with self.loop.db.transaction() as session:
            drill = repo.drill_by_id_for_answer(session, drill_id)
            if drill is None or drill.ts is None:
                return SealedResult.GONE
            if not accepts_sealed_answer(drill.status, drill.deadline, now):
                return SealedResult.CLOSED
            first = repo.upsert_modal_answer(session, drill=drill, user_id=user_id, text=text, now=now)
            channel = drill.channel
        if first and self.loop.metrics:
            self.loop.metrics.answer_recorded(channel)
        return SealedResult.STORED

    def rate(self, drill_id: int, user_id: str, rating: str) -> str | None:
        """Record a self-rating; returns why it was refused, or None when stored."""
        if rating not in RATINGS:
            return "Unknown rating."
        with self.loop.db.transaction() as session:
            drill = session.get(Drill, drill_id)
            if drill is None:
                return "That drill no longer exists."
            if not repo.has_answered(session, drill_id, user_id):
                return "Only people who answered this drill can rate themselves on it."
            category = self.loop.question_of(drill).category
            repo.upsert_rating(
                session, drill_id=drill_id, user_id=user_id, rating=rating, category=category, now=self.loop.clock()
            )
        return None
