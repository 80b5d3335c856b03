"""The answer intake on its own: replies stored in groups, on the event loop when nothing would wait, else
on the writer thread; each caller settled alone.

A recording stub stands in for `Answers.record_replies` (no database, no Slack). The callers are coroutines
on an asyncio loop, as on the HTTP edge. `loop_would_wait` makes the stub refuse every attempt on the loop
(`WouldWait`, as the database does when someone else is writing), so the writer thread stores; to see its
grouping, the stub holds the writer's first call until the test lets it go: whatever is submitted
meanwhile must be stored together in the next call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest

from bot.errors import RetryLater
from bot.intake import AnswerIntake, Outcome
from storage.db import WouldWait


class StoreFailed(Exception):
    """What the stub raises for a group that holds a reply it cannot store (a database error, say)."""


class Recorder:
    """A stub `record`: keeps the ts of every group it is given, in order, and answers `stored <ts>` per reply.

    `groups` are the groups the writer thread stored (wait=True), `on_loop` those the loop stored or tried
    (wait=False). `loop_would_wait`: every attempt on the loop raises `WouldWait`. `hold_first`: the writer's
    first call waits for `release` (the writer is busy). A reply whose text is "bad" makes its whole group
    raise `StoreFailed`; one whose text is "posting" comes to a `RetryLater`.
    """

    def __init__(self, *, hold_first: bool = False, loop_would_wait: bool = False) -> None:
        self.loop_would_wait = loop_would_wait
        self.groups: list[list[str]] = []
        self.on_loop: list[list[str]] = []
        self.busy = threading.Event()  # the first call has started
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.failures: list[StoreFailed] = []
        self.retry_laters: dict[str, RetryLater] = {}

    def __call__(self, messages: Sequence[Mapping[str, Any]], *, wait: bool) -> list[str | RetryLater]:
        if not wait:
            assert threading.current_thread() is threading.main_thread(), "wait=False runs on the event loop"
            self.on_loop.append([str(m["ts"]) for m in messages])
            if self.loop_would_wait:
                raise WouldWait("someone else is writing")
            return self._store(messages)
        assert threading.current_thread() is not threading.main_thread(), "waiting runs on the writer thread"
        self.groups.append([str(m["ts"]) for m in messages])
        if len(self.groups) == 1:
            self.busy.set()
            assert self.release.wait(10), "the test never released the first group"
        return self._store(messages)

    def _store(self, messages: Sequence[Mapping[str, Any]]) -> list[str | RetryLater]:
        if any(m["text"] == "bad" for m in messages):
            failure = StoreFailed(f"cannot store a group of {len(messages)}")
            self.failures.append(failure)
            raise failure
        outcomes: list[str | RetryLater] = []
        for m in messages:
            if m["text"] == "posting":
                self.retry_laters[str(m["ts"])] = RetryLater("a drill is still being posted")
                outcomes.append(self.retry_laters[str(m["ts"])])
            else:
                outcomes.append(f"stored {m['ts']}")
        return outcomes


def reply(ts: str, text: str = "my answer") -> dict[str, Any]:
    return {"type": "message", "channel": "CDRILLS01", "user": f"U{ts}", "text": text, "thread_ts": "1.0", "ts": ts}


def run(scenario: Callable[[AnswerIntake, Recorder], Awaitable[Any]], *, hold_first: bool = False,
        loop_would_wait: bool = False, **intake_options: Any) -> tuple[Any, Recorder]:
    """Run `scenario(intake, recorder)` on a fresh event loop (a caller never settled fails it after 10 s);
    the intake is closed afterwards."""
    recorder = Recorder(hold_first=hold_first, loop_would_wait=loop_would_wait)
    intake = AnswerIntake(recorder, wants=lambda _message: True, **intake_options)
    try:
        return asyncio.run(asyncio.wait_for(scenario(intake, recorder), 10)), recorder
    finally:
        recorder.release.set()
        intake.close()


async def while_busy(intake: AnswerIntake, recorder: Recorder, *later: dict[str, Any]) -> list[Outcome]:
    """Submit one reply, and `later` while the writer is still storing it; then let the writer go on. The
    outcomes of all of them, in the order submitted."""
    first = asyncio.create_task(intake.submit(reply("0")))
    assert await asyncio.to_thread(recorder.busy.wait, 10), "the writer never took the first reply"
    queued = [asyncio.create_task(intake.submit(message)) for message in later]
    await asyncio.sleep(0)  # one turn of the loop: each task runs up to its await, so all of them are queued
    assert not any(task.done() for task in [first, *queued])
    recorder.release.set()
    return list(await asyncio.gather(first, *queued))


def test_a_lone_reply_is_stored_alone_on_the_loop_and_its_outcome_returned() -> None:
    async def scenario(intake: AnswerIntake, _recorder: Recorder) -> Outcome:
        return await intake.submit(reply("1"))

    outcome, recorder = run(scenario)

    assert outcome == "stored 1"
    assert recorder.on_loop == [["1"]]
    assert recorder.groups == []  # no hop to the writer thread


def test_replies_of_one_turn_of_the_loop_are_stored_together_on_the_loop() -> None:
    async def scenario(intake: AnswerIntake, _recorder: Recorder) -> list[Outcome]:
        return list(await asyncio.gather(*(intake.submit(reply(str(n))) for n in range(5))))

    outcomes, recorder = run(scenario)

    assert recorder.on_loop == [["0", "1", "2", "3", "4"]]  # one transaction for the five, in order
    assert outcomes == [f"stored {n}" for n in range(5)]
    assert recorder.groups == []


def test_when_the_loop_would_wait_the_writer_thread_stores_the_group() -> None:
    async def scenario(intake: AnswerIntake, _recorder: Recorder) -> list[Outcome]:
        return list(await asyncio.gather(*(intake.submit(reply(str(n))) for n in range(3))))

    outcomes, recorder = run(scenario, loop_would_wait=True)

    assert recorder.on_loop == [["0", "1", "2"]]
    assert recorder.groups == [["0", "1", "2"]]
    assert outcomes == ["stored 0", "stored 1", "stored 2"]


def test_replies_that_arrive_while_the_writer_stores_a_group_are_stored_together_next() -> None:
    later = [reply(str(n)) for n in range(1, 6)]

    outcomes, recorder = run(lambda intake, recorder: while_busy(intake, recorder, *later), hold_first=True,
                             loop_would_wait=True)

    assert recorder.groups == [["0"], ["1", "2", "3", "4", "5"]]  # one transaction for the five, in order
    assert outcomes == [f"stored {n}" for n in range(6)]  # each caller gets its own reply's outcome


def test_a_group_that_fails_on_the_loop_is_stored_again_there_one_reply_at_a_time() -> None:
    async def scenario(intake: AnswerIntake, _recorder: Recorder) -> list[Outcome]:
        messages = [reply("1"), reply("2", "bad"), reply("3")]
        return list(await asyncio.gather(*(intake.submit(m) for m in messages)))

    outcomes, recorder = run(scenario)

    assert recorder.on_loop == [["1", "2", "3"], ["1"], ["2"], ["3"]]
    assert recorder.groups == []
    group_failure, alone_failure = recorder.failures
    assert outcomes[0] == "stored 1"
    assert outcomes[1] is alone_failure  # only the bad reply's caller gets an error: its own, stored alone
    assert outcomes[2] == "stored 3"


def test_a_lone_reply_that_fails_on_the_writer_gets_its_error_without_a_second_try() -> None:
    async def scenario(intake: AnswerIntake, _recorder: Recorder) -> Outcome:
        return await intake.submit(reply("1", "bad"))

    outcome, recorder = run(scenario, loop_would_wait=True)

    assert recorder.groups == [["1"]]
    assert outcome is recorder.failures[0]


def test_a_retry_later_outcome_goes_to_its_caller_only() -> None:
    async def scenario(intake: AnswerIntake, _recorder: Recorder) -> list[Outcome]:
        messages = [reply("1"), reply("2", "posting"), reply("3")]
        return list(await asyncio.gather(*(intake.submit(m) for m in messages)))

    outcomes, recorder = run(scenario)

    assert recorder.on_loop == [["1", "2", "3"]]  # an outcome, not a failure: the group is not retried
    assert recorder.groups == []
    assert outcomes == ["stored 1", recorder.retry_laters["2"], "stored 3"]


def test_close_stores_what_is_queued_and_a_later_submit_is_refused_without_recording(
    eventually: Callable[..., Any],
) -> None:
    async def scenario(intake: AnswerIntake, recorder: Recorder) -> tuple[list[Outcome], Outcome]:
        first = asyncio.create_task(intake.submit(reply("0")))
        assert await asyncio.to_thread(recorder.busy.wait, 10)
        queued = [asyncio.create_task(intake.submit(reply(ts))) for ts in ("1", "2")]
        await asyncio.sleep(0)  # both are submitted; the loop's attempt at them comes next turn
        await asyncio.sleep(0)
        closing = asyncio.create_task(asyncio.to_thread(intake.close))
        # close() has put its stop behind the two replies (white box: nothing public shows it) before the
        # writer goes on, so the writer meets the stop while the replies are still waiting.
        await asyncio.to_thread(eventually, lambda: intake._queue.qsize() == 3, what="the stop behind two replies")
        recorder.release.set()
        await closing
        stored = list(await asyncio.gather(first, *queued))
        return stored, await intake.submit(reply("3"))

    (stored, after_close), recorder = run(scenario, hold_first=True, loop_would_wait=True)

    assert stored == ["stored 0", "stored 1", "stored 2"]
    assert recorder.groups == [["0"], ["1", "2"]]  # nothing recorded for the submit after close
    assert isinstance(after_close, RetryLater)


def test_a_group_that_fails_on_the_writer_is_stored_again_there_one_reply_at_a_time() -> None:
    later = [reply("1"), reply("2", "bad"), reply("3")]

    outcomes, recorder = run(lambda intake, recorder: while_busy(intake, recorder, *later), hold_first=True,
                             loop_would_wait=True)

    assert recorder.groups == [["0"], ["1", "2", "3"], ["1"], ["2"], ["3"]]
    group_failure, alone_failure = recorder.failures
    assert outcomes[:2] == ["stored 0", "stored 1"]
    assert outcomes[2] is alone_failure
    assert outcomes[3] == "stored 3"


@pytest.mark.parametrize("max_group", [1, 3])
def test_a_group_holds_at_most_max_group_replies(max_group: int) -> None:
    async def scenario(intake: AnswerIntake, _recorder: Recorder) -> list[Outcome]:
        return list(await asyncio.gather(*(intake.submit(reply(str(n))) for n in range(7))))

    outcomes, recorder = run(scenario, max_group=max_group)

    ts = [str(n) for n in range(7)]
    assert recorder.on_loop == [ts[i:i + max_group] for i in range(0, len(ts), max_group)]
    assert outcomes == [f"stored {n}" for n in range(7)]


def test_a_record_that_breaks_its_contract_fails_its_callers_and_the_intake_keeps_working() -> None:
    calls: list[int] = []

    def record(messages: Sequence[Mapping[str, Any]], *, wait: bool) -> list[str | RetryLater]:
        calls.append(len(messages))
        if not wait:
            raise WouldWait("someone else is writing")
        if len(calls) == 2:  # the writer's first group: one outcome too few (a bug in the answer path)
            return []
        return [f"stored {m['ts']}" for m in messages]

    async def scenario() -> tuple[Outcome, Outcome]:
        intake = AnswerIntake(record, wants=lambda _message: True)
        try:
            broken = await asyncio.wait_for(intake.submit(reply("1")), 10)
            after = await asyncio.wait_for(intake.submit(reply("2")), 10)
        finally:
            intake.close()
        return broken, after

    broken, after = asyncio.run(scenario())

    assert isinstance(broken, RuntimeError) and "0 outcomes for 1 replies" in str(broken)
    assert after == "stored 2"  # the writer thread is still there
