"""Regressions in Redis-shared circuit breakers: what one client does must not be lost by another."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

from multiagents import FakeClock
from multiagents.resilience import CircuitBreaker, CircuitState

pytestmark = pytest.mark.integration


async def test_a_failure_recorded_on_a_stale_cached_state_is_not_lost(
    redis_url: str, unique_name: str
) -> None:
    """A failure arriving while the shared breaker is closed counts, whatever this client last saw.

    Client A saw the breaker open (it opened it). Client B later half-opens, closes it and fails once.
    A's call admitted before the opening now fails: the state is closed with one failure, so this is the
    second failure in a row and opens it, as it does on one MemoryBreakerStore. RedisBreakerStore.apply
    decides on A's cached "open" state, finds nothing to change and returns without the compare-and-set
    that would have shown the state had moved on, so the failure is dropped.
    """
    import redis.asyncio as aioredis

    from multiagents.resilience.redis_breaker import RedisBreakerStore

    clock = FakeClock()
    client_a, client_b = aioredis.from_url(redis_url), aioredis.from_url(redis_url)
    try:
        a = CircuitBreaker(unique_name, 2, 10, store=RedisBreakerStore(client_a), clock=clock)
        b = CircuitBreaker(unique_name, 2, 10, store=RedisBreakerStore(client_b), clock=clock)
        started, finish = asyncio.Event(), asyncio.Event()

        async def slow_fail() -> None:
            started.set()
            await finish.wait()
            raise ConnectionError("late")

        async def fail() -> None:
            raise ConnectionError("down")

        async def ok() -> str:
            return "ok"

        late = asyncio.ensure_future(a.call(slow_fail))
        await started.wait()  # admitted while closed
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await a.call(fail)
        assert (await b.snapshot())["state"] is CircuitState.OPEN
        await clock.advance(10)
        assert await b.call(ok) == "ok"  # B's probe closes it
        with pytest.raises(ConnectionError):
            await b.call(fail)
        assert (await b.snapshot())["failure_count"] == 1
        finish.set()
        with pytest.raises(ConnectionError):
            await late
        snapshot = await b.snapshot()
        assert (snapshot["state"], snapshot["failure_count"]) == (CircuitState.OPEN, 2)
    finally:
        await client_a.aclose()
        await client_b.aclose()


async def test_successful_calls_from_many_processes_are_never_turned_into_errors(
    redis_url: str, unique_name: str
) -> None:
    """32 processes sharing a failure-rate breaker all get their successful call's result back.

    In window mode every outcome is a compare-and-set; with more concurrent writers than ``max_tries``
    (16) some lose every round and ``call()`` raises ConcurrencyConflict after the wrapped call has
    succeeded, so its result (a payment made, say) is lost and that success is missing from the window.
    """
    import redis.asyncio as aioredis

    from multiagents.resilience.redis_breaker import RedisBreakerStore

    clock = FakeClock()
    clients = [aioredis.from_url(redis_url) for _ in range(32)]
    try:
        breakers = [
            CircuitBreaker(unique_name, window=60, min_calls=1000, store=RedisBreakerStore(c), clock=clock)
            for c in clients
        ]

        async def ok() -> str:
            return "ok"

        results: list[Any] = await asyncio.gather(*(b.call(ok) for b in breakers), return_exceptions=True)
        outcomes = collections.Counter(
            type(r).__name__ if isinstance(r, BaseException) else r for r in results
        )
        assert outcomes == {"ok": 32}
        assert (await breakers[0].snapshot())["calls"] == 32
    finally:
        for c in clients:
            await c.aclose()
