"""Redis-backed circuit breakers shared by clients and processes: one state, atomic probes, one round trip."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from multiagents import FakeClock
from multiagents.errors import CircuitBreakerOpenError
from multiagents.resilience import BreakerTransition, CircuitBreaker, CircuitState

pytestmark = pytest.mark.integration

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys

    import redis.asyncio as aioredis

    from multiagents.errors import CircuitBreakerOpenError
    from multiagents.resilience import CircuitBreaker
    from multiagents.resilience.redis_breaker import RedisBreakerStore


    async def work(kind):
        if kind == "fail":
            raise ConnectionError("service down")
        return "ok"


    async def main(url, name):
        client = aioredis.from_url(url)
        store = RedisBreakerStore(client)
        breaker = CircuitBreaker(name, failure_threshold=3, recovery_timeout=600, store=store)
        loop = asyncio.get_running_loop()
        print(json.dumps({"ready": True}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            try:
                out = {"result": await breaker.call(work, line.strip())}
            except CircuitBreakerOpenError as exc:
                out = {"refused": exc.retry_after}
            except ConnectionError:
                out = {"failed": True}
            out["state"] = breaker.state.value
            print(json.dumps(out), flush=True)
        await client.aclose()


    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


class WorkerProcess:
    """A separate Python process guarding calls with a Redis-backed breaker, driven line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 20)
        assert line, "worker process exited"
        return dict(json.loads(line))

    async def send(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read()

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 20)


@pytest.fixture
async def cleanup(redis_client: Any, unique_name: str) -> AsyncIterator[None]:
    yield
    keys = [k async for k in redis_client.scan_iter(match=f"multiagents:breaker:{unique_name}*")]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture
async def second_client(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def shared(name: str, client: Any, clock: FakeClock, **kwargs: Any) -> CircuitBreaker:
    from multiagents.resilience.redis_breaker import RedisBreakerStore

    kwargs.setdefault("failure_threshold", 3)
    kwargs.setdefault("recovery_timeout", 60)
    return CircuitBreaker(name, store=RedisBreakerStore(client), clock=clock, **kwargs)


def count_commands(client: Any) -> list[str]:
    """Record the name of every command the client sends (a pipeline-free client: one per round trip)."""
    sent: list[str] = []
    original = client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await original(*args, **options)

    client.execute_command = counting
    return sent


async def fail_once(breaker: CircuitBreaker) -> None:
    async def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await breaker.call(down)


async def test_failures_in_one_process_open_the_breaker_for_another(
    redis_url: str, unique_name: str, tmp_path: Path, cleanup: None
) -> None:
    """Process B calls fine, process A fails three times, then B's next call is refused without being made."""
    script = tmp_path / "breaker_worker.py"
    script.write_text(WORKER)
    name = f"{unique_name}-payment"
    workers = []
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            redis_url,
            name,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        workers.append(WorkerProcess(proc))
    a, b = workers
    try:
        assert await a.read() == {"ready": True}
        assert await b.read() == {"ready": True}
        assert await b.send("ok") == {"result": "ok", "state": "closed"}
        assert [await a.send("fail") for _ in range(3)] == [
            {"failed": True, "state": "closed"},
            {"failed": True, "state": "closed"},
            {"failed": True, "state": "open"},
        ]
        refused = await b.send("ok")
        assert refused["state"] == "open"
        assert 590 < refused["refused"] <= 600
        assert (await a.send("ok"))["state"] == "open"
    finally:
        for w in workers:
            await w.stop()


async def test_two_clients_in_one_process_share_state(
    redis_client: Any, second_client: Any, unique_name: str, cleanup: None
) -> None:
    """Breakers on two Redis clients: A's failures open B; B's successful probe closes A."""
    clock = FakeClock()
    a = shared(unique_name, redis_client, clock)
    b = shared(unique_name, second_client, clock)
    for _ in range(3):
        await fail_once(a)
    assert await b.allow() == pytest.approx(60)
    with pytest.raises(CircuitBreakerOpenError) as info:
        await b.call(asyncio.sleep, 0)
    assert info.value.breaker == unique_name
    await clock.advance(60)
    assert await b.call(asyncio.sleep, 0, "probe") == "probe"
    assert b.state is CircuitState.CLOSED
    snap = await a.snapshot()
    assert (snap["state"], snap["failure_count"], snap["retry_after"]) == ("closed", 0, None)
    stored = json.loads(await redis_client.get(f"multiagents:breaker:{unique_name}"))
    assert stored["state"] == "closed" and stored["version"] >= 5


async def test_concurrent_probes_across_clients_never_exceed_the_limit(
    redis_client: Any, second_client: Any, unique_name: str, cleanup: None
) -> None:
    """Forty concurrent allow() calls from two clients on a half-open breaker admit exactly two probes."""
    clock = FakeClock()
    a = shared(unique_name, redis_client, clock, half_open_max_calls=2)
    b = shared(unique_name, second_client, clock, half_open_max_calls=2)
    for round_ in range(3):
        for _ in range(3):
            await fail_once(a)
        await clock.advance(60)
        answers = await asyncio.gather(*(x.allow() for _ in range(20) for x in (a, b)))
        assert sum(r is None for r in answers) == 2, (round_, answers)
        assert all(r is None or r > 0 for r in answers)
        snap = await b.snapshot()
        assert (snap["state"], snap["half_open_in_flight"]) == ("half_open", 2)
        await a.record_success()  # one probe succeeds: closed for the next round
        assert (await b.snapshot())["state"] == "closed"


async def test_closed_hot_path_costs_one_round_trip(
    redis_client: Any, unique_name: str, cleanup: None
) -> None:
    """Closed: a successful call sends one GET, a failure GET + EVALSHA; open: a refusal sends one GET."""
    clock = FakeClock()
    breaker = shared(unique_name, redis_client, clock, failure_threshold=2)
    await fail_once(breaker)  # loads the script and records a failure
    await breaker.call(asyncio.sleep, 0)  # resets the count (a write), back to the quiet state
    sent = count_commands(redis_client)
    for _ in range(50):
        await breaker.call(asyncio.sleep, 0)
    assert sent == ["GET"] * 50
    sent.clear()
    await fail_once(breaker)
    await fail_once(breaker)
    assert sent == ["GET", "EVALSHA", "GET", "EVALSHA"]
    sent.clear()
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(asyncio.sleep, 0)
    assert sent == ["GET"]


async def test_window_mode_is_shared_across_clients(
    redis_client: Any, second_client: Any, unique_name: str, cleanup: None
) -> None:
    """Failure-rate mode counts both clients' calls in one window: 5 successes on A, 5 failures on B open."""
    clock = FakeClock()
    options = {"window": 60, "min_calls": 10, "failure_rate": 0.5}
    a = shared(unique_name, redis_client, clock, **options)
    b = shared(unique_name, second_client, clock, **options)
    for _ in range(5):
        await a.call(asyncio.sleep, 0)
    for _ in range(4):
        await fail_once(b)
    assert (await a.snapshot())["calls"] == 9
    await fail_once(b)
    assert await a.allow() == pytest.approx(60)


async def test_outcome_recorded_by_a_process_that_did_not_admit_the_call(
    redis_client: Any, second_client: Any, unique_name: str, cleanup: None
) -> None:
    """The engine's split: A (orchestrator) admits the probe with allow(), B (worker) only records; B's
    success closes the breaker, and B reads once per outcome, writing only when something changes."""
    clock = FakeClock()
    orchestrator = shared(unique_name, redis_client, clock)
    worker = shared(unique_name, second_client, clock)
    for _ in range(3):
        await worker.record_failure(ConnectionError("down"))
    assert await orchestrator.allow() == pytest.approx(60)
    await clock.advance(60)
    assert await orchestrator.allow() is None  # the probe
    assert await orchestrator.allow() is not None
    await worker.record_success(0.1)
    assert (await orchestrator.snapshot())["state"] == "closed"
    sent = count_commands(second_client)
    for _ in range(10):
        await worker.record_success(0.1)
    assert sent == ["GET"] * 10


async def test_admitting_and_recording_on_one_object_costs_one_round_trip(
    redis_client: Any, unique_name: str, cleanup: None
) -> None:
    """Embedded engine style: allow() then record_success() on the same breaker sends one GET per call."""
    breaker = shared(unique_name, redis_client, FakeClock())
    await breaker.allow()
    await breaker.record_success()
    sent = count_commands(redis_client)
    for _ in range(20):
        assert await breaker.allow() is None
        await breaker.record_success(0.01)
    assert sent == ["GET"] * 20


async def test_each_client_notifies_only_the_changes_it_made(
    redis_client: Any, second_client: Any, unique_name: str, cleanup: None
) -> None:
    """A opens the breaker and alone hears closed -> open; B, seeing it open, hears nothing until its own
    probe half-opens and closes it; of forty racing admissions exactly one reports open -> half_open."""
    clock = FakeClock()
    heard: dict[str, list[BreakerTransition]] = {"a": [], "b": []}
    a = shared(unique_name, redis_client, clock, half_open_max_calls=2, on_transition=heard["a"].append)
    b = shared(unique_name, second_client, clock, half_open_max_calls=2, on_transition=heard["b"].append)
    for _ in range(3):
        await fail_once(a)
    assert [(t.old, t.new, t.retry_after) for t in heard["a"]] == [
        (CircuitState.CLOSED, CircuitState.OPEN, 60.0)
    ]
    assert await b.allow() == pytest.approx(60)
    assert heard["b"] == []
    await clock.advance(60)
    assert await b.call(asyncio.sleep, 0, "probe") == "probe"
    assert [(t.old, t.new) for t in heard["b"]] == [
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert len(heard["a"]) == 1
    assert [t["new"] for t in (await a.snapshot())["transitions"]] == ["open"]
    for _ in range(3):
        await fail_once(a)
    await clock.advance(60)
    heard["a"].clear()
    heard["b"].clear()
    answers = await asyncio.gather(*(x.allow() for _ in range(20) for x in (a, b)))
    assert sum(r is None for r in answers) == 2
    assert [(t.old, t.new) for t in heard["a"] + heard["b"]] == [(CircuitState.OPEN, CircuitState.HALF_OPEN)]


async def test_release_by_another_client_frees_the_probe_slot(
    redis_client: Any, second_client: Any, unique_name: str, cleanup: None
) -> None:
    """The orchestrator admits the probe, the worker (another client) releases it after a cancellation:
    the breaker stays half-open with its count and the orchestrator's next allow() is admitted."""
    clock = FakeClock()
    orchestrator = shared(unique_name, redis_client, clock)
    worker = shared(unique_name, second_client, clock)
    for _ in range(3):
        await worker.record_failure(ConnectionError("down"))
    await clock.advance(60)
    assert await orchestrator.allow() is None  # the probe
    assert await orchestrator.allow() == pytest.approx(1)  # slot taken: ask again in a moment
    await worker.release()
    snap = await orchestrator.snapshot()
    assert (snap["state"], snap["failure_count"], snap["half_open_in_flight"]) == ("half_open", 3, 0)
    assert await orchestrator.allow() is None
