"""bot/domain/claims.py: when a post/reveal step started by another attempt may be taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.claims import LEASE, Owner, can_take_over, retry_delay

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ME = Owner("host-a", 4242, "n0nce001")


def take_over(claimed_by: str | None, *, after: timedelta, attempts: int = 1) -> bool:
    return can_take_over(claimed_by=claimed_by, claimed_at=T0, attempts=attempts, now=T0 + after, me=ME)


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


def test_each_process_start_gets_a_fresh_nonce() -> None:
    assert Owner("h", 1).nonce != Owner("h", 1).nonce


def test_an_unclaimed_step_can_be_taken() -> None:
    assert can_take_over(claimed_by=None, claimed_at=None, attempts=0, now=T0, me=ME)


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


@pytest.mark.parametrize(
    "claimed_by",
    [
        "host-a:4242:n0nce001",  # ourselves
        "host-a:4242:othernonce",  # a replica sharing our hostname and PID (containers, both PID 1)
        "host-a:1111:abcd",  # same host, another pid (maybe in another PID namespace)
        "host-b:1111:abcd",
        "garbage",
        "",
    ],
)
def test_a_live_claim_is_trusted_until_its_lease_runs_out_whoever_holds_it(claimed_by: str) -> None:
    # Regression: a claim whose owner shared our host and PID but not our nonce was taken over at once,
    # so two replicas on the host network (both PID 1) took over each other's live claims.
    assert not take_over(claimed_by, after=timedelta(0))
    assert not take_over(claimed_by, after=LEASE - timedelta(seconds=1))
    assert take_over(claimed_by, after=LEASE)
    assert take_over(claimed_by, after=LEASE + timedelta(hours=2))
