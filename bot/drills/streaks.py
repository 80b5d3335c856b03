"""Streaks: the leaderboard, and folding closed drills into the stored per-person state.

The stored state (`streaks`) is "as of drill N": closed drills are folded in, in order, by one process
at a time (a conditional write on `drills.streak_applied` decides who). When history already folded in
changes, a `streak_rebuilds` row asks for a rebuild, which the next fold does before anything else. A
leaderboard reads the stored state plus the few drills not folded yet, by the one rule in
`bot.domain.streaks`.
"""

from __future__ import annotations

from typing import Any

from bot.domain.lifecycle import DrillState, accepts_answer
from bot.domain.streaks import DrillRef, Streak, compute_streaks, rank
from bot.drills.loop import Loop
from bot.errors import ConfigError
from storage import repo

__all__ = ["FOLD_BACKLOG", "Streaks"]

FOLD_BACKLOG = 3  # closed drills a leaderboard replays before it folds them into the stored state


class _FoldConflict(Exception):
    """Another process folded some of these drills first: roll back, nothing to do."""


def _stored(session: Any, channel: str) -> dict[str, Streak]:
    return {
        user: Streak(user, current, longest, total)
        for user, current, longest, total in repo.streak_states(session, channel)
    }


class Streaks:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def leaderboard(self, channel: str | None = None) -> list[Streak]:
        """Everyone's streak in the channel: the stored state plus the drills not folded into it yet."""
        loop = self.loop
        now = loop.clock()
        with loop.db.transaction() as session:
            channel = self._channel(session, channel)
            if channel is None:
                return []
            backlog = repo.pending_streak_drills(session, channel)
            stale = repo.streak_rebuild_requested(session, channel)
        finished = sum(1 for d in backlog[: FOLD_BACKLOG + 1] if d.status == DrillState.CLOSED)
        if stale or finished > FOLD_BACKLOG:
            self.fold_streaks(channel)  # e.g. after a rebuild: fold once instead of replaying on every read
        with loop.db.transaction(snapshot=True) as session:
            if repo.streak_rebuild_requested(session, channel):  # changed again since: replay everything
                stored: dict[str, Streak] = {}
                pending = repo.posted_drills(session, channel)
            else:
                stored = _stored(session, channel)
                pending = repo.pending_streak_drills(session, channel)
            answered = repo.answered_in(session, [d.id for d in pending])
            snoozes = repo.snoozes_by_user(session)
        refs = [DrillRef(d.id, accepts_answer(d.status, d.deadline, now), d.day) for d in pending]
        return rank(compute_streaks(refs, answered, start=stored, snoozes=snoozes).values())

    def _channel(self, session: Any, channel: str | None) -> str | None:
        if channel is not None:
            return channel
        programs = self.loop.programs
        if len(programs) == 1:
            return programs[0].channel
        if programs:
            return self.loop.program_for(None).channel  # several programs: raises, naming them
        channels = repo.drill_channels(session)
        if len(channels) > 1:
            raise ConfigError(f"drills exist in several channels ({', '.join(channels)}); name one with --channel")
        return channels[0] if channels else None

    def fold_streaks(self, channel: str) -> int:
        """Fold closed drills, in order, into the stored streaks; returns how many were folded.

        Rebuilds first when history changed. Stops at the first drill whose reveal is not done, so the
        state is always "as of drill N". Two processes folding at once: only one wins; the other rolls back.
        """
        try:
            with self.loop.db.transaction() as session:
                # Lock order: drills rows (unfold, then the claim below), then streak_rebuilds, then streaks.
                if repo.streak_rebuild_requested(session, channel):
                    repo.unfold_streaks(session, channel)
                refs = []
                for drill in repo.pending_streak_drills(session, channel):
                    if drill.status != DrillState.CLOSED:
                        break
                    refs.append(DrillRef(drill.id, False, drill.day))
                ids = [r.id for r in refs]
                if not ids:
                    return 0
                if not repo.claim_streak_fold(session, ids):
                    raise _FoldConflict
                folded = compute_streaks(
                    refs,
                    repo.answered_in(session, ids),
                    start=_stored(session, channel),
                    snoozes=repo.snoozes_by_user(session),
                )
                rows = ((s.user_id, s.current, s.longest, s.total) for s in folded.values())
                repo.replace_streak_states(session, channel, rows)
        except _FoldConflict:
            return 0
        return len(ids)
