"""The drill's lifecycle: every state, every transition, and the one rule for accepting an answer.

This module is the single written-down state machine; `storage.repo.transition` refuses any change that
is not listed here, and each service step in `bot.drills` is one of these arrows.

                  claim_post                posted / adopted
    (no row) ──────────────────► POSTING ─────────────────────────► OPEN
                                  │  ▲                                │
                  Slack refused   │  │ retry_post (`drillbot post`)   │ deadline passed: claim_reveal
                                  ▼  │                                ▼
                              POST_FAILED                         REVEALING ◄──────────┐
                                                                      │  │             │ retry_reveal
                                                     Slack refused    │  └──────► REVEAL_FAILED
                                                                      │  revealed          (scheduler, with
                                            sealed drill ┌────────────┴────────┐ other      backoff; and
                                                         ▼                     ▼            `reveal --due`)
                                                      SEALING ──────────────► CLOSED
                                                        sealed answers posted

POSTING, REVEALING and SEALING are *steps in flight*: the row names the process doing the step
(`claimed_by`) and when its lease started (`claimed_at`). A step that failed in an uncertain way (timeout,
5xx, crash) is released (`claimed_by` cleared) and retried after a growing delay; a step whose owner is
silent past its lease is taken over. Either way the next attempt first looks in Slack for the message the
earlier attempt may have posted (message metadata carries the drill id), so nothing is posted twice.

The two refusal states say different things: POST_FAILED means no message exists (posting again is
right); REVEAL_FAILED means the drill *was* posted and its guidance is still owed (it is retried, and
`drillbot post` never posts that day again).
"""

from __future__ import annotations

import enum
from datetime import datetime

__all__ = [
    "ANSWERABLE",
    "POSTED",
    "TRANSITIONS",
    "DrillState",
    "InvalidTransition",
    "accepts_answer",
    "accepts_sealed_answer",
    "check_transition",
]


class DrillState(enum.StrEnum):
    POSTING = "posting"
    POST_FAILED = "post_failed"
    OPEN = "open"
    REVEALING = "revealing"
    REVEAL_FAILED = "reveal_failed"
    SEALING = "sealing"
    CLOSED = "closed"


S = DrillState

# (from, to) -> the name of the step. A step that keeps its state (a takeover, a retry after release) is
# listed as a self-transition.
TRANSITIONS: dict[tuple[DrillState, DrillState], str] = {
    (S.POSTING, S.POSTING): "take_over_post",
    (S.POSTING, S.OPEN): "posted",
    (S.POSTING, S.POST_FAILED): "post_refused",
    (S.POST_FAILED, S.POSTING): "retry_post",
    (S.OPEN, S.REVEALING): "claim_reveal",
    (S.REVEALING, S.REVEALING): "take_over_reveal",
    (S.REVEALING, S.SEALING): "revealed_sealed",
    (S.REVEALING, S.CLOSED): "revealed",
    (S.REVEALING, S.REVEAL_FAILED): "reveal_refused",
    (S.REVEAL_FAILED, S.REVEALING): "retry_reveal",
    (S.SEALING, S.SEALING): "take_over_sealed",
    (S.SEALING, S.CLOSED): "sealed_posted",
}

# States whose drill has a message in Slack (the thread people answer in).
POSTED = frozenset({S.OPEN, S.REVEALING, S.REVEAL_FAILED, S.SEALING, S.CLOSED})
ANSWERABLE = POSTED


class InvalidTransition(ValueError):
    """A change of state that the lifecycle does not allow (a programming error, never user input)."""


def check_transition(source: DrillState | str, target: DrillState | str) -> str:
    """The step's name, or InvalidTransition."""
    try:
        return TRANSITIONS[(DrillState(source), DrillState(target))]
    except (KeyError, ValueError):
        raise InvalidTransition(f"a drill cannot go from {source!s} to {target!s}") from None


def accepts_answer(state: DrillState | str, deadline: datetime, written_at: datetime) -> bool:
    """Does a drill in `state` with this deadline accept an answer written at `written_at`?

    The one rule, used by thread replies, edits, deletes, sealed answers and the reveal: the drill must
    have a message (POSTED), and the answer must be written strictly before the deadline. The reveal is
    due at the deadline itself (`storage.repo.drills_needing_reveal`: `deadline <= now`), so no answer can
    be both accepted and after the reveal's moment.
    """
    return DrillState(state) in ANSWERABLE and written_at < deadline


def accepts_sealed_answer(state: DrillState | str, deadline: datetime, at: datetime) -> bool:
    """A sealed answer must also be in before the reveal begins: the SEALING step posts what is stored."""
    return DrillState(state) == DrillState.OPEN and accepts_answer(state, deadline, at)
