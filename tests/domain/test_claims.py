"""bot/domain/claims.py: when a post/reveal step started by another attempt may be taken over."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.claims import LEASE, Owner, can_take_over, retry_delay

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ME = Owner("host-a", 4242, "n0nce001")


def alive(*pids: int) -> Callable[[int], bool]:
    return lambda pid: pid in pids


def never_asked(pid: int) -> bool:
    raise AssertionError(f"pid_alive({pid}) must not be consulted here")


def take_over(
    claimed_by: str | None, *, after: timedelta, attempts: int = 1, pid_alive: Callable[[int], bool] = never_asked
) -> bool:
    return can_take_over(
        claimed_by=claimed_by, claimed_at=T0, attempts=attempts, now=T0 + after, me=ME, pid_alive=pid_alive
    )


# -- retry_delay -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "seconds"), [(0, 5), (1, 5), (2, 10), (3, 20), (4, 40), (5, 80), (6, 160), (7, 300), (8, 300)]
)
def test_retry_delay_doubles_from_5s_and_is_capped_at_5_minutes(attempts: int, seconds: int) -> None:
    assert retry_delay(attempts) == timedelta(seconds=seconds)


def test_retry_delay_stays_capped_for_many_attempts() -> None:
    assert retry_delay(50) == timedelta(seconds=300)
    assert retry_delay(10_000) == timedelta(seconds=300)
    delays = [retry_delay(n) for n in range(1, 30)]
    assert delays == sorted(delays)


# -- can_take_over -----------------------------------------------------------------------------------


def test_owner_string_is_host_pid_nonce() -> None:
    assert str(ME) == "host-a:4242:n0nce001"


def test_an_unclaimed_step_can_be_taken() -> None:
    assert can_take_over(claimed_by=None, claimed_at=None, attempts=0, now=T0, me=ME, pid_alive=never_asked)


@pytest.mark.parametrize("attempts", [1, 2, 3, 7])
def test_a_released_claim_waits_for_the_retry_delay(attempts: int) -> None:
    delay = retry_delay(attempts)
    assert not take_over(None, after=timedelta(0), attempts=attempts)
    assert not take_over(None, after=delay - timedelta(milliseconds=1), attempts=attempts)
    assert take_over(None, after=delay, attempts=attempts)
    assert take_over(None, after=delay + timedelta(hours=1), attempts=attempts)


def test_a_released_claim_with_the_first_delay() -> None:
    assert not take_over(None, after=timedelta(seconds=4), attempts=1)
    assert take_over(None, after=timedelta(seconds=5), attempts=1)
    assert not take_over(None, after=timedelta(seconds=19), attempts=3)
    assert take_over(None, after=timedelta(seconds=20), attempts=3)


def test_our_own_claim_is_never_taken_over_by_ourselves() -> None:
    for after in (timedelta(0), timedelta(minutes=5), LEASE, LEASE * 10):
        assert not take_over(str(ME), after=after)


def test_same_host_dead_pid_can_be_taken_over_at_once() -> None:
    assert take_over("host-a:1111:abcd", after=timedelta(0), pid_alive=alive(4242))


def test_same_host_live_pid_is_trusted_until_the_lease_runs_out() -> None:
    assert not take_over("host-a:1111:abcd", after=timedelta(0), pid_alive=alive(1111))
    assert not take_over("host-a:1111:abcd", after=LEASE - timedelta(seconds=1), pid_alive=alive(1111))
    assert take_over("host-a:1111:abcd", after=LEASE, pid_alive=alive(1111))


def test_same_pid_other_nonce_is_an_earlier_life_of_a_restarted_container() -> None:
    # PID 1 in a container is reused after a restart: the nonce tells the lives apart. The pid is
    # "alive" (it is us), yet the claim is from a dead process.
    assert take_over("host-a:4242:oldnonce", after=timedelta(0), pid_alive=alive(4242))


def test_other_host_is_trusted_within_the_lease() -> None:
    # A pid on another host means nothing here: it must not be checked locally.
    assert not take_over("host-b:1111:abcd", after=timedelta(0))
    assert not take_over("host-b:4242:n0nce001", after=timedelta(minutes=9, seconds=59))


def test_other_host_can_be_taken_over_after_the_lease() -> None:
    assert timedelta(minutes=10) == LEASE
    assert take_over("host-b:1111:abcd", after=LEASE)
    assert take_over("host-b:1111:abcd", after=LEASE + timedelta(hours=2))


@pytest.mark.parametrize("claimed_by", ["garbage", "host-a", "host-a:notapid:x", "host-a::x", ""])
def test_unparseable_owner_is_only_taken_over_after_the_lease(claimed_by: str) -> None:
    assert not take_over(claimed_by, after=timedelta(seconds=1))
    assert take_over(claimed_by, after=LEASE)


def test_is_gone_checks_the_pid_only_on_our_host() -> None:
    asked: list[int] = []

    def probe(pid: int) -> bool:
        asked.append(pid)
        return False

    assert ME.is_gone("host-a:77:x", pid_alive=probe)
    assert not ME.is_gone("host-b:77:x", pid_alive=probe)
    assert not ME.is_gone(str(ME), pid_alive=probe)
    assert asked == [77]
