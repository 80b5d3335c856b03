"""The answer intake: people's thread replies that arrive over HTTP, stored in groups before their 200.

An answer is stored before Slack gets its 200. Storing each on its own request thread meant a thread hop,
Bolt's middleware and a transaction (BEGIN, the statement, COMMIT) per reply, with the threads taking turns
on SQLite's single write lock anyway. Here the HTTP edge hands a signed reply to `submit` on its event loop
and awaits the outcome. Every reply submitted during one turn of the loop joins one group (one reply when
traffic is light, dozens in a burst), stored in one transaction (`Answers.record_replies`: the same rule
and statements as the Bolt listener's path): a burst costs one commit, not one per reply.

Where the group is stored:
- on the event loop itself, when that takes no waiting (`record(..., wait=False)`; on SQLite: nobody else
  is writing): no thread hop, which costs more than the statement;
- else on the intake's one writer thread (PostgreSQL always; SQLite while a job, a slash command or another
  process writes), which takes whatever has queued up meanwhile as its next group, and settles every
  waiting request with one wake-up of the loop.

If a group's transaction fails, each of its replies is tried again alone (where it was: on the loop, or on
the writer thread), so one bad reply fails only its own request (500: Slack redelivers it) and the others
are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from bot.errors import RetryLater
from storage.db import WouldWait

__all__ = ["MAX_GROUP", "AnswerIntake", "Outcome", "Record"]

log = logging.getLogger(__name__)

# At most this many replies per transaction: a group holds SQLite's write lock (and, stored on the loop,
# the loop) for a few milliseconds at most.
MAX_GROUP = 64

# What a reply came to: the answer path's outcome (acknowledged), or the error that keeps it from being
# acknowledged (`RetryLater`, a database error: Slack redelivers it).
Outcome = str | Exception


class Record(Protocol):
    """Store a group of replies in one transaction; `wait=False`: raise `WouldWait` rather than wait."""

    def __call__(self, messages: Sequence[Mapping[str, Any]], *, wait: bool) -> Sequence[str | RetryLater]: ...


_Item = tuple[Mapping[str, Any], "asyncio.Future[Outcome]", asyncio.AbstractEventLoop]
_STOP = object()
_WAIT = object()  # a reply the event loop could not store without waiting: the writer thread's


class AnswerIntake:
    """Groups of replies, stored on the event loop when nothing would wait, else on one writer thread."""

    def __init__(self, record: Record, *, wants: Callable[[Mapping[str, Any]], bool],
                 max_group: int = MAX_GROUP) -> None:
        self._record = record
        self.wants = wants  # is this `message` event one for the intake (a person's thread reply)?
        self.max_group = max_group
        self._pending: list[_Item] = []  # submitted during this turn of the loop
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="answer-intake", daemon=True)
        self._thread.start()

    async def submit(self, message: Mapping[str, Any]) -> Outcome:
        """Store one reply with the others of this turn of the loop; its outcome once they have committed."""
        if self._closed:
            return RetryLater("drillbot is stopping")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((message, future, loop))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def close(self, timeout: float = 10.0) -> None:
        """Store what is queued, then end the writer thread (the server has stopped taking requests)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():  # still storing (a database that hangs): it answers what it holds itself
            log.warning("the answer intake was still storing replies %.0f s after the stop", timeout)
            return
        # Anything left (a request that raced with the stop) is not stored: Slack redelivers it.
        late = list(self._pending)
        self._pending = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                late.append(item)  # type: ignore[arg-type]
        if late:
            _settle(late, [RetryLater("drillbot is stopping") for _ in late])

    # -- on the event loop --------------------------------------------------------------------------

    def _flush(self) -> None:
        items, self._pending = self._pending, []
        for start in range(0, len(items), self.max_group):
            group = items[start:start + self.max_group]
            outcomes = self._store([message for message, _, _ in group], wait=False)
            settled = []
            for item, outcome in zip(group, outcomes, strict=True):
                if outcome is _WAIT:
                    self._queue.put(item)
                else:
                    settled.append((item[1], cast(Outcome, outcome)))
            _resolve(settled)

    # -- on the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group = [first]
            stop = False
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
            items: list[_Item] = group  # type: ignore[assignment]
            try:
                # Waiting, WouldWait never comes: every outcome is the answer path's, or its error.
                outcomes = cast(list[Outcome], self._store([message for message, _, _ in items], wait=True))
            except BaseException as exc:  # never leave a request waiting, nor the thread dead with work queued
                log.exception("the answer intake failed to store %d replies", len(items))
                outcomes = [exc if isinstance(exc, Exception) else RuntimeError(repr(exc)) for _ in items]
            _settle(items, outcomes)
            if stop:
                return

    # -- either --------------------------------------------------------------------------------------

    def _store(self, messages: list[Mapping[str, Any]], *, wait: bool) -> list[Outcome | object]:
        """One transaction for the group; if it fails, one per reply. Without `wait` (on the loop): `_WAIT`
        for the replies the database could not take without waiting, left to the writer thread."""
        try:
            return list(_checked(self._record(messages, wait=wait), messages))
        except WouldWait:
            return [_WAIT] * len(messages)
        except Exception as exc:
            if len(messages) == 1:
                return [exc]
            log.warning("storing %d replies together failed (%s); storing each alone", len(messages),
                        exc.__class__.__name__)
            return [outcome for message in messages for outcome in self._store([message], wait=wait)]


def _checked(outcomes: Sequence[str | RetryLater], messages: list[Mapping[str, Any]]) -> list[Outcome]:
    if len(outcomes) != len(messages):
        raise RuntimeError(f"{len(outcomes)} outcomes for {len(messages)} replies")
    return list(outcomes)


def _settle(items: list[_Item], outcomes: list[Outcome]) -> None:
    """From another thread: hand each waiting request its outcome, one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome]]] = {}
    for (_, future, loop), outcome in zip(items, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(settled: list[tuple[asyncio.Future[Outcome], Outcome]]) -> None:
    for future, outcome in settled:
        if not future.done():
            future.set_result(outcome)
