"""Revealing: the REVEALING and SEALING steps of the lifecycle (see `bot.domain.lifecycle`).

From its deadline on, a drill's guidance is owed. The reveal is claimed, posted in the thread (found
again by its metadata after an uncertain failure), and the drill message is re-rendered as closed. A
sealed drill then has its own step, SEALING, with its own claim: the sealed answers are posted in parts,
each marked with its index, so a retry or a restart posts exactly the parts that are missing. A refusal
(archived channel, bot removed) is REVEAL_FAILED: the drill keeps its message, the running bot retries
with a growing delay and `drillbot reveal --due` at once, and `drillbot post` never posts that day again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot import blocks
from bot.domain.lifecycle import DrillState
from bot.drills.loop import Loop, Snapshot, describe_failure
from bot.drills.port import REVEAL_EVENT, SEALED_EVENT
from bot.errors import SlackSetupError
from bot.logs import bind
from storage import repo

__all__ = ["Revealer"]

log = logging.getLogger(__name__)


class Revealer:
    def __init__(self, loop: Loop, *, on_closed: Callable[[str], object] | None = None) -> None:
        self.loop = loop
        # Called with the channel after a drill closed (the streak fold); its failure only costs speed.
        self.on_closed = on_closed

    def reveal_due(self, *, retry_failed: bool = False) -> list[int]:
        """Reveal every drill whose guidance is owed; returns the ids closed now.

        `retry_failed`: retry a refused reveal at once (the operator fixed the channel), not after its delay.
        """
        loop = self.loop
        now = loop.clock()
        owner = str(loop.owner)
        with loop.db.transaction() as session:
            candidates = repo.drills_needing_reveal(session, now)
        closed: list[int] = []
        for drill in candidates:
            state = DrillState(drill.status)
            if state == DrillState.OPEN:
                target, reconcile = DrillState.REVEALING, False
            elif state == DrillState.REVEAL_FAILED and (retry_failed or loop.can_take_over(drill, now)):
                target, reconcile = DrillState.REVEALING, True
            elif state in (DrillState.REVEALING, DrillState.SEALING) and loop.can_take_over(drill, now):
                target, reconcile = state, True
            else:
                continue
            with loop.db.transaction() as session:
                if not repo.claim(session, drill, to=target, owner=owner, now=now):
                    continue
                answered = repo.answerer_count(session, drill.id)
            snapshot = loop.snapshot(drill)
            with bind(drill_id=drill.id), loop.holding(drill.id):
                if target == DrillState.SEALING:
                    done = self._post_sealed(snapshot, reconcile=True)
                else:
                    done = self._reveal(snapshot, answered, reconcile=reconcile)
            if done:
                closed.append(drill.id)
                self._closed(snapshot.channel)
        return closed

    def _reveal(self, drill: Snapshot, answered: int, *, reconcile: bool) -> bool:
        loop = self.loop
        owner = str(loop.owner)
        assert drill.ts is not None  # only posted drills are revealed
        question = loop.question_of(drill)
        try:
            found = (
                loop.slack.find_marked(
                    drill.channel, event_type=REVEAL_EVENT, drill_id=drill.id, oldest=float(drill.ts),
                    thread_ts=drill.ts,
                )
                if reconcile
                else []
            )
            if found:
                reveal_ts = found[0].ts
            else:
                reveal_ts = loop.slack.post(
                    drill.channel,
                    blocks.reveal_message(question, answered=answered, drill_id=drill.id),
                    thread_ts=drill.ts,
                    event_type=REVEAL_EVENT,
                    drill_id=drill.id,
                )
        except SlackSetupError as exc:
            log.error("drill %s: guidance not posted: %s", drill.id, exc)
            with loop.db.transaction() as session:
                won = repo.finish(
                    session, drill.id, source=DrillState.REVEALING, to=DrillState.REVEAL_FAILED, owner=owner,
                    error=str(exc)[:255], claimed_at=loop.clock(),  # the retry delay counts from now
                )
            if not won:
                loop.lost("reveal", drill.id)
            return False
        except Exception as exc:
            detail = describe_failure(exc)
            log.warning("drill %s: reveal not confirmed (%s); will check Slack and retry", drill.id, detail)
            log.debug("drill %s: reveal failure", drill.id, exc_info=True)
            with loop.db.transaction() as session:
                repo.release(session, drill.id, owner=owner, now=loop.clock(), error=detail)
            return False
        try:
            closed = blocks.drill_message(question, deadline=drill.deadline, closed=True, answered=answered)
            loop.slack.update(drill.channel, drill.ts, closed)
        except Exception as exc:  # cosmetic: the guidance is out; the closed badge can be missing
            log.warning("drill %s: could not mark the drill message closed (%s)", drill.id, describe_failure(exc))
        now = loop.clock()
        fields: dict[str, object] = {"reveal_ts": reveal_ts, "revealed_at": now, "answer_count": answered}
        if drill.sealed:
            # The sealed answers are a step of their own; this process keeps the claim and goes on with it.
            fields |= {"claimed_by": owner, "claimed_at": now, "attempts": 1}
        with loop.db.transaction() as session:
            won = repo.finish(
                session, drill.id, source=DrillState.REVEALING,
                to=DrillState.SEALING if drill.sealed else DrillState.CLOSED, owner=owner, **fields,
            )
        if not won:
            loop.lost("reveal", drill.id)
            return False
        log.info("drill %s: revealed (%d answered)", drill.id, answered)
        if loop.metrics:
            loop.metrics.reveal_posted(drill.channel, (now - drill.deadline).total_seconds())
        if drill.sealed:
            return self._post_sealed(drill, reconcile=False)
        return True

    def _post_sealed(self, drill: Snapshot, *, reconcile: bool) -> bool:
        """The sealed answers, after the guidance (attributed by user ID, their text escaped), each part once."""
        loop = self.loop
        owner = str(loop.owner)
        assert drill.ts is not None
        with loop.db.transaction() as session:
            messages = blocks.sealed_answers_messages(repo.modal_answers(session, drill.id))
        try:
            posted: set[int] = set()
            if reconcile and messages:
                for marked in loop.slack.find_marked(
                    drill.channel, event_type=SEALED_EVENT, drill_id=drill.id, oldest=float(drill.ts),
                    thread_ts=drill.ts,
                ):
                    part = marked.payload.get("part")
                    if isinstance(part, int):
                        posted.add(part)
            for part, message in enumerate(messages):
                if part not in posted:
                    loop.slack.post(
                        drill.channel, message, thread_ts=drill.ts, event_type=SEALED_EVENT, drill_id=drill.id,
                        payload={"part": part},
                    )
        except Exception as exc:
            detail = describe_failure(exc) if not isinstance(exc, SlackSetupError) else str(exc)
            log.warning("drill %s: sealed answers not posted (%s); will check Slack and retry", drill.id, detail)
            with loop.db.transaction() as session:
                repo.release(session, drill.id, owner=owner, now=loop.clock(), error=detail)
            return False
        with loop.db.transaction() as session:
            won = repo.finish(session, drill.id, source=DrillState.SEALING, to=DrillState.CLOSED, owner=owner)
        if not won:
            loop.lost("sealed", drill.id)
            return False
        if messages:
            log.info("drill %s: sealed answers posted (%d message(s))", drill.id, len(messages))
        return True

    def _closed(self, channel: str) -> None:
        if self.on_closed is None:
            return
        try:
            self.on_closed(channel)
        except Exception:  # the leaderboard replays unfolded drills, so this only costs speed
            log.warning("could not update the stored streaks of %s", channel, exc_info=True)
