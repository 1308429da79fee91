"""What a circuit breaker costs a call: in memory (closed fast path) and shared through Redis.

    .venv/bin/python bench/breaker.py [--calls 200000] [--redis-calls 2000] [--redis redis://127.0.0.1:6379/15]

In memory: the per-call overhead of ``await breaker.call(noop)``, of the ``@breaker`` decorator, and of the
engine's ``allow()`` + ``record_success()`` pair, against a bare ``await noop()`` measured in the same run
(best of five rounds; the target is under 5 µs), and what one full open -> half_open -> closed cycle costs
with and without an ``on_transition`` callback. Redis: commands sent per call (counted on the client) and
µs per call, next to a bare GET for the round trip itself. The Redis part is skipped when the server
cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from multiagents import FakeClock
from multiagents.resilience import BreakerTransition, CircuitBreaker

ROUNDS = 5


async def noop() -> None:
    return None


async def best(loop_body: Callable[[int], Awaitable[None]], n: int) -> float:
    """Seconds per iteration, the best of ROUNDS rounds (the machine is shared and noisy)."""
    times = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        await loop_body(n)
        times.append(time.perf_counter() - t0)
    return min(times) / n


async def memory(n: int) -> None:
    breaker = CircuitBreaker("bench")
    guarded = breaker(noop)

    async def bare(k: int) -> None:
        for _ in range(k):
            await noop()

    async def via_call(k: int) -> None:
        call = breaker.call
        for _ in range(k):
            await call(noop)

    async def via_decorator(k: int) -> None:
        for _ in range(k):
            await guarded()

    async def via_primitives(k: int) -> None:
        allow, record = breaker.allow, breaker.record_success
        for _ in range(k):
            if await allow() is None:
                await noop()
                await record(0.0)

    base = await best(bare, n)
    print(f"in-memory breaker, closed, around an async no-op ({n} calls, best of {ROUNDS}):")
    print(f"  bare await noop()              {base * 1e6:7.3f} µs/call")
    for label, body in (
        ("await breaker.call(noop)", via_call),
        ("@breaker decorated", via_decorator),
        ("allow() + record_success()", via_primitives),
    ):
        per = await best(body, n)
        over = (per - base) * 1e6
        print(f"  {label:<30} {per * 1e6:7.3f} µs/call   overhead {over:6.3f} µs   x{per / base:.1f}")
    assert breaker.state == "closed" and (await breaker.snapshot())["failure_count"] == 0


async def changes(n: int) -> None:
    """Cycles of three state changes each (a failure opens, the probe half-opens and closes), so the cost
    of recording a change, and of telling a callback, shows against the same cycle without one."""

    async def down() -> None:
        raise ConnectionError("down")

    heard: list[int] = []

    def hook(change: BreakerTransition) -> None:
        heard.append(1)

    print(f"\nin-memory breaker, state changes ({n} cycles of 3 changes, best of {ROUNDS}):")
    for label, on_transition in (("no callback", None), ("on_transition set", hook)):
        clock = FakeClock()
        breaker = CircuitBreaker(
            "bench-cycle", failure_threshold=1, recovery_timeout=1, clock=clock, on_transition=on_transition
        )

        async def cycle(k: int, breaker: CircuitBreaker = breaker, clock: FakeClock = clock) -> None:
            for _ in range(k):
                with contextlib.suppress(ConnectionError):
                    await breaker.call(down)
                clock.sleep_sync(1)
                await breaker.call(noop)

        per = await best(cycle, n)
        print(f"  {label:<30} {per * 1e6:7.3f} µs/cycle")
    assert len(heard) == 3 * ROUNDS * n


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=0.5):
            return True
    except OSError:
        return False


def count_commands(client: Any) -> list[str]:
    sent: list[str] = []
    original = client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await original(*args, **options)

    client.execute_command = counting
    return sent


async def shared(url: str, n: int) -> None:
    if not reachable(url):
        print(f"\nRedis breaker: skipped, no Redis at {url}")
        return
    import redis.asyncio as aioredis

    from multiagents.resilience.redis_breaker import RedisBreakerStore

    client = aioredis.from_url(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    store = RedisBreakerStore(client)
    breaker = CircuitBreaker(name, failure_threshold=1_000_000, store=store)
    try:
        await breaker.call(noop)  # connect
        sent = count_commands(client)

        async def gets(k: int) -> None:
            for _ in range(k):
                await client.get(store.key(name))

        async def calls(k: int) -> None:
            for _ in range(k):
                await breaker.call(noop)

        rtt = await best(gets, n)
        sent.clear()
        per = await best(calls, n)
        ok_commands = len(sent) / (ROUNDS * n)
        sent.clear()

        async def down() -> None:
            raise ConnectionError("down")

        failures = 100
        for _ in range(failures):
            with contextlib.suppress(ConnectionError):
                await breaker.call(down)
        fail_commands = len(sent) / failures
        print(f"\nRedis-backed breaker at {url} ({n} calls, best of {ROUNDS}):")
        print(f"  bare GET (one round trip)      {rtt * 1e6:7.1f} µs")
        print(
            f"  closed, call succeeds          {per * 1e6:7.1f} µs/call   {ok_commands:.2f} round trips/call"
        )
        print(
            f"  closed, call fails (counted)   {fail_commands:.2f} round trips/call (GET + compare-and-set)"
        )
    finally:
        await client.delete(store.key(name))
        await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--redis-calls", type=int, default=2_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    await memory(args.calls)
    await changes(max(args.calls // 10, 1))
    await shared(args.redis, args.redis_calls)


if __name__ == "__main__":
    asyncio.run(main())
