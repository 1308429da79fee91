"""Restarting on the same store: unfinished workflows resume, changed definitions are refused loudly."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from multiagents import (
    FakeClock,
    MultiAgentsError,
    RetryPolicy,
    Runtime,
    SagaState,
    WorkflowBuilder,
    step_info,
    worker,
)
from multiagents.store import Store
from multiagents.store.memory import MemoryStore
from multiagents.workflow import WorkflowDefinition

BACKOFF = RetryPolicy(max_attempts=3, initial_interval=5, jitter=0)
StoreArg = Callable[[], "str | Store"]
T = TypeVar("T")


@pytest.fixture(params=["memory", "sqlite"])
def store_arg(request: pytest.FixtureRequest, tmp_path: Path) -> StoreArg:
    """What each Runtime of one test is given so that they all share one store."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    url = f"sqlite:///{tmp_path}/recovery.db"
    return lambda: url


def runtime(clock: FakeClock, store: str | Store, workflows: list[WorkflowDefinition]) -> Runtime:
    return Runtime(workflows=workflows, store=store, clock=clock, rng=random.Random(3))


async def finish(clock: FakeClock, aw: Awaitable[T]) -> T:
    """Run ``aw`` to its end with fake time skipping; fail within seconds of real time if it never ends."""
    return await asyncio.wait_for(clock.run_until(aw), 5)


async def until(clock: FakeClock, check: Callable[[], Any], rounds: int = 100) -> None:
    """Let the loop run (no time passes) until ``check()`` holds."""
    for _ in range(rounds):
        await clock.advance(0)
        if await check():
            return
    raise AssertionError("condition never held")


class Recorder:
    """Workers for a two-step workflow whose calls are recorded, with switchable misbehaviour."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, str]] = []  # (tid, step, fake time, idempotency key)
        self.fail_first: set[str] = set()  # steps whose first attempt per workflow raises ConnectionError
        self.block: set[str] = set()  # steps that never return (until the runtime stops)
        self.entered = asyncio.Event()

    def make(self, clock: FakeClock, name: str) -> Any:
        @worker(name)
        async def run(context: dict[str, Any]) -> dict[str, Any]:
            info = step_info()
            earlier = [c for c in self.calls if c[:2] == (info.transaction_id, info.step)]
            self.calls.append((info.transaction_id, info.step, clock.now(), info.idempotency_key))
            if info.step in self.block:
                self.entered.set()
                await asyncio.Event().wait()
            if info.step in self.fail_first and not earlier:
                raise ConnectionError(f"{info.step} unreachable")
            return {f"{info.step}_done": True}

        return run

    def count(self, tid: str, step: str) -> int:
        return sum(1 for c in self.calls if c[:2] == (tid, step))


def order_workflow(
    rec: Recorder, clock: FakeClock, steps: tuple[str, ...] = ("a", "b")
) -> WorkflowDefinition:
    builder = WorkflowBuilder("order")
    for name in steps:
        builder = builder.add_step(name, rec.make(clock, f"do_{name}"), retry_policy=BACKOFF, timeout=60)
    return builder.build()


async def test_workflows_waiting_on_a_retry_resume_after_restart(
    store_arg: StoreArg, clock: FakeClock
) -> None:
    """Workflows stopped while waiting to retry are retried by the next Runtime at the planned time."""
    rec = Recorder()
    rec.fail_first = {"b"}
    wf = order_workflow(rec, clock)
    async with runtime(clock, store_arg(), [wf]) as rt:
        tids = [await rt.execute_workflow("order", {"n": i}) for i in range(3)]

        async def all_retrying() -> bool:
            return all([(await rt.get_status(t))["steps"]["b"]["status"] == "retrying" for t in tids])

        await until(clock, all_retrying)
        failed_at = clock.now()
    assert len(rec.calls) == 6

    async with runtime(clock, store_arg(), [wf]) as rt2:
        assert rt2.resumed == 3
        statuses = [await finish(clock, rt2.wait(t)) for t in tids]
    assert [s["state"] for s in statuses] == [SagaState.COMPLETED] * 3
    for tid, status in zip(tids, statuses, strict=True):
        assert rec.count(tid, "a") == 1
        assert rec.count(tid, "b") == 2
        assert status["steps"]["b"]["attempts"] == 2
        retried_at = [c[2] for c in rec.calls if c[:2] == (tid, "b")][1]
        assert retried_at == failed_at + 5  # the backoff, neither skipped nor lost


async def test_overdue_retry_runs_as_soon_as_the_runtime_starts(
    store_arg: StoreArg, clock: FakeClock
) -> None:
    """A retry that fell due while no Runtime ran is dispatched at start, without waiting further."""
    rec = Recorder()
    rec.fail_first = {"a"}
    wf = order_workflow(rec, clock)
    async with runtime(clock, store_arg(), [wf]) as rt:
        tid = await rt.execute_workflow("order", {})

        async def retrying() -> bool:
            return (await rt.get_status(tid))["steps"]["a"]["status"] == "retrying"

        await until(clock, retrying)
    later = FakeClock(start=clock.now() + 3600)
    async with runtime(later, store_arg(), [wf]) as rt2:
        status = await finish(later, rt2.wait(tid))
        assert later.now() == clock.now() + 3600
    assert status["state"] == SagaState.COMPLETED
    assert rec.count(tid, "a") == 2


async def test_in_flight_attempt_is_redispatched_at_once(store_arg: StoreArg, clock: FakeClock) -> None:
    """An attempt running when the Runtime stopped is tried again on start, same key, not after its lease."""
    rec = Recorder()
    rec.block = {"b"}
    wf = order_workflow(rec, clock)
    async with runtime(clock, store_arg(), [wf]) as rt:
        tid = await rt.execute_workflow("order", {})
        await asyncio.wait_for(rec.entered.wait(), 5)
    stopped_at = clock.now()

    rec.block = set()
    async with runtime(clock, store_arg(), [wf]) as rt2:
        status = await finish(clock, rt2.wait(tid))
    assert status["state"] == SagaState.COMPLETED
    assert clock.now() == stopped_at  # no lease had to run out
    b_calls = [c for c in rec.calls if c[1] == "b"]
    assert len(b_calls) == 2
    assert b_calls[0][3] == b_calls[1][3] == f"{tid}:b"
    assert rec.count(tid, "a") == 1
    assert status["steps"]["b"]["attempts"] == 2  # the lost attempt counts, as a lost activity does
    assert any(e["status"] == "interrupted" and e["step"] == "b" for e in status["execution_history"])


async def _stop_with_b_in_flight(rec: Recorder, clock: FakeClock, store: str | Store) -> tuple[str, int]:
    """Run the two-step workflow until step b is in flight, stop; returns its id and stored version."""
    rec.block = {"b"}
    async with runtime(clock, store, [order_workflow(rec, clock)]) as rt:
        tid = await rt.execute_workflow("order", {})
        await asyncio.wait_for(rec.entered.wait(), 5)
        version = (await rt.get_status(tid))["version"]
    rec.block = set()
    return tid, version


async def test_changed_definition_is_reported_not_resumed(
    store_arg: StoreArg, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Under a changed step list with the same workflow id, the instance is blocked, logged, and untouched."""
    rec = Recorder()
    tid, version = await _stop_with_b_in_flight(rec, clock, store_arg())
    calls_before = len(rec.calls)
    caplog.set_level(logging.ERROR, logger="multiagents.engine")

    changed = order_workflow(rec, clock, ("a", "b", "c"))
    async with runtime(clock, store_arg(), [changed]) as rt2:
        assert rt2.resumed == 0
        status = await rt2.get_status(tid)
        assert status["state"] == SagaState.RUNNING
        assert status["version"] == version
        assert "fingerprint" in status["blocked"]
        assert changed.fingerprint in status["blocked"]
        with pytest.raises(MultiAgentsError, match="fingerprint"):
            await rt2.wait(tid)
        with pytest.raises(MultiAgentsError, match="fingerprint"):
            await rt2.cancel_workflow(tid)
        listed = await rt2.list_workflows()
        assert [(s["transaction_id"], "fingerprint" in s["blocked"]) for s in listed] == [(tid, True)]
        await clock.advance(120)  # past b's lease: still nothing happens to it
        assert (await rt2.get_status(tid))["version"] == version
    assert len(rec.calls) == calls_before
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "multiagents.engine"]
    assert len(errors) == 1
    assert tid in errors[0].getMessage()
    assert "fingerprint" in errors[0].getMessage()

    # The refusal did no harm: under the definition it started with, the workflow finishes.
    async with runtime(clock, store_arg(), [order_workflow(rec, clock)]) as rt3:
        assert rt3.resumed == 1
        status = await finish(clock, rt3.wait(tid))
    assert status["state"] == SagaState.COMPLETED
    assert "blocked" not in status


async def test_unregistered_workflow_is_reported_not_resumed(
    store_arg: StoreArg, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An unfinished instance of a workflow the new Runtime does not know is blocked and logged by name."""
    rec = Recorder()
    tid, version = await _stop_with_b_in_flight(rec, clock, store_arg())
    calls_before = len(rec.calls)
    caplog.set_level(logging.ERROR, logger="multiagents.engine")

    other = WorkflowBuilder("other").add_step("x", rec.make(clock, "do_x")).build()
    async with runtime(clock, store_arg(), [other]) as rt2:
        assert rt2.resumed == 0
        status = await rt2.get_status(tid)
        assert status["state"] == SagaState.RUNNING
        assert status["version"] == version
        assert "'order'" in status["blocked"]
        assert "not registered" in status["blocked"] or "no workflow" in status["blocked"]
        with pytest.raises(MultiAgentsError, match="order"):
            await rt2.wait(tid)
        # The Runtime itself still works for the workflows it knows.
        done = await finish(clock, rt2.run("other", {}))
        assert done["state"] == SagaState.COMPLETED
    assert len(rec.calls) == calls_before + 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "multiagents.engine"]
    assert [tid in r.getMessage() and "'order'" in r.getMessage() for r in errors] == [True]


async def test_restart_with_nothing_unfinished_resumes_nothing(store_arg: StoreArg, clock: FakeClock) -> None:
    """Finished workflows stay as they are across a restart and nothing is re-run."""
    rec = Recorder()
    wf = order_workflow(rec, clock)
    async with runtime(clock, store_arg(), [wf]) as rt:
        tid = await rt.execute_workflow("order", {})
        first = await finish(clock, rt.wait(tid))
    async with runtime(clock, store_arg(), [wf]) as rt2:
        assert rt2.resumed == 0
        again = await rt2.wait(tid)
    assert first["state"] == again["state"] == SagaState.COMPLETED
    assert again["version"] == first["version"]
    assert len(rec.calls) == 2


async def test_finished_workflow_of_an_older_definition_stays_readable(
    store_arg: StoreArg, clock: FakeClock
) -> None:
    """A completed workflow started under an older step list can still be waited on, read and listed."""
    rec = Recorder()
    async with runtime(clock, store_arg(), [order_workflow(rec, clock)]) as rt:
        tid = await rt.execute_workflow("order", {})
        first = await finish(clock, rt.wait(tid))
    changed = order_workflow(rec, clock, ("a", "b", "c"))
    async with runtime(clock, store_arg(), [changed]) as rt2:
        assert rt2.resumed == 0
        status = await rt2.wait(tid)
        assert (await rt2.get_status(tid))["steps"] == first["steps"]
        assert [s["transaction_id"] for s in await rt2.list_workflows()] == [tid]
    assert status["state"] == SagaState.COMPLETED
    assert list(status["steps"]) == ["a", "b"]
    assert "blocked" not in status
