"""Regression tests for promises the engine once broke.

Each test pins one promise: a workflow never strands, a result is never lost without a trace, a
compensation sees what it was told it would see, and bad input ends in a sentence.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from multiagents import (
    CircuitBreakerOpenError,
    FakeClock,
    InMemoryEventBus,
    Orchestrator,
    RetryPolicy,
    Runtime,
    SagaState,
    SerializationError,
    Step,
    StepFailed,
    WorkerManager,
    WorkflowBuilder,
    step_info,
    worker,
)
from multiagents.cli import cli
from multiagents.errors import StoreError
from multiagents.messages import Kind, Result
from multiagents.state import RunStatus, WorkflowInstance
from multiagents.store import Transition
from multiagents.store.memory import MemoryStore

NO_JITTER = RetryPolicy(max_attempts=3, initial_interval=1, backoff_coefficient=2, jitter=0)


class FailOnceStore(MemoryStore):
    """A memory store whose commit fails once (a full disk, a dropped connection) when ``when`` holds."""

    def __init__(self, when: Callable[[WorkflowInstance], bool]) -> None:
        super().__init__()
        self.when = when
        self.armed = True

    async def commit(self, transitions: Sequence[Transition]) -> None:
        if self.armed and any(self.when(t.instance) for t in transitions):
            self.armed = False
            raise StoreError("disk I/O error")
        await super().commit(transitions)


class HeldStore(MemoryStore):
    """A store whose commit awaits, as a networked store does; the first matching commit is held open."""

    def __init__(self, when: Callable[[WorkflowInstance], bool] = lambda inst: True) -> None:
        super().__init__()
        self.when = when
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.armed = True

    async def commit(self, transitions: Sequence[Transition]) -> None:
        await asyncio.sleep(0)
        if self.armed and any(self.when(t.instance) for t in transitions):
            self.armed = False
            self.reached.set()
            await self.release.wait()
        await super().commit(transitions)


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


# ---- the engine shell: commits, calls, timers ----------------------------------------------------


async def test_failed_commit_of_a_retry_does_not_strand_the_workflow(clock: FakeClock) -> None:
    """When the commit that dispatches a retry fails once, the retry is tried again and the workflow ends."""
    calls: list[float] = []

    @worker("flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(clock.now())
        if len(calls) == 1:
            raise ConnectionError("service unreachable")
        return {"ok": True}

    def dispatching_attempt_2(inst: WorkflowInstance) -> bool:
        run = inst.steps["call"].execution
        return run.attempt == 2 and run.status is RunStatus.RUNNING

    wf = WorkflowBuilder("w").add_step("call", flaky, retry_policy=NO_JITTER).build()
    store = FailOnceStore(dispatching_attempt_2)
    async with Runtime(workflows=[wf], store=store, clock=clock, rng=random.Random(1)) as rt:
        tid = await rt.execute_workflow("w", {})
        await clock.advance(3600)
        status = await rt.get_status(tid)
    assert not store.armed  # the commit did fail once
    assert status["state"] == SagaState.COMPLETED, status["steps"]
    assert len(calls) == 2


async def test_retry_compensations_answers_when_the_workflow_finished_during_the_call(
    clock: FakeClock,
) -> None:
    """retry_compensations called while the commit that ends the workflow is in flight returns, not hangs."""

    @worker("reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"reservation_id": "R1"}

    @worker("release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"requires_manual_intervention": True}

    @worker("charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        raise StepFailed("card declined")

    wf = (
        WorkflowBuilder("w")
        .add_step("reserve", reserve, compensation=release)
        .add_step("charge", charge)
        .build()
    )
    store = HeldStore(lambda inst: inst.state is SagaState.COMPENSATION_FAILED)
    async with Runtime(workflows=[wf], store=store, clock=clock) as rt:
        tid = await rt.execute_workflow("w", {})
        await asyncio.wait_for(store.reached.wait(), 5)
        call = asyncio.ensure_future(rt.retry_compensations(tid))
        await settle()
        store.release.set()
        done, _ = await asyncio.wait({call}, timeout=2)
        call.cancel()
        assert done, "retry_compensations never returned"
        assert call.result()["state"] == SagaState.COMPENSATING


async def test_repeated_start_with_one_transaction_id_keeps_the_workflow_driven(clock: FakeClock) -> None:
    """A client retrying execute_workflow with the same id gets the id back and the workflow still ends."""
    gate = asyncio.Event()

    @worker("slow")
    async def slow(ctx: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return {}

    wf = WorkflowBuilder("w").add_step("s", slow).build()
    store = HeldStore()
    async with Runtime(workflows=[wf], store=store, clock=clock) as rt:
        first = asyncio.ensure_future(rt.execute_workflow("w", {}, transaction_id="order-1"))
        await asyncio.wait_for(store.reached.wait(), 5)
        again = asyncio.ensure_future(rt.execute_workflow("w", {}, transaction_id="order-1"))
        await settle(1)
        cancel = asyncio.ensure_future(rt.cancel_workflow("order-1"))
        await settle(1)
        store.release.set()
        results = await asyncio.gather(first, again, cancel, return_exceptions=True)
        gate.set()
        assert results[:2] == ["order-1", "order-1"], results
        status = await asyncio.wait_for(clock.run_until(rt.wait("order-1")), 5)
    assert status["state"] == SagaState.CANCELLED


async def test_late_result_after_the_workflow_ended_is_recorded(make_runtime: Any, clock: FakeClock) -> None:
    """A success that arrives after the saga gave up on the attempt shows in the history as ignored."""

    @worker("charge", timeout=5)
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()  # the answer is lost on the way back
        return {}

    wf = WorkflowBuilder("w").add_step("charge", charge, retry_policy=RetryPolicy(max_attempts=1)).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
        assert status["state"] == SagaState.FAILED
        tid = status["transaction_id"]
        attempt_id = f"{tid}:charge:execute:1"
        late = Result(tid, "charge", Kind.EXECUTE, attempt_id, {"payment_id": "P1"}, None, 0.0, clock.now())
        await rt.bus.send_result(late)
        await clock.advance(1)
        history = (await rt.get_status(tid))["execution_history"]
    assert [e for e in history if e["status"] == "ignored" and e.get("attempt_id") == attempt_id]


# ---- what workers see and return -----------------------------------------------------------------


async def test_output_keys_that_collide_as_json_fail_the_step(make_runtime: Any, clock: FakeClock) -> None:
    """An output with a non-string key fails as serialization naming the key, instead of losing a value."""

    @worker("lookup")
    async def lookup(ctx: dict[str, Any]) -> dict[str, Any]:
        return {1: "from the int key", "1": "from the str key"}

    wf = WorkflowBuilder("w").add_step("lookup", lookup).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.FAILED, status["step_results"]
    assert status["error"]["category"] == "serialization"
    assert "1" in status["error"]["message"]


async def test_input_with_non_string_keys_is_refused_at_start(make_runtime: Any) -> None:
    """execute_workflow refuses a context whose keys are not strings rather than renaming them silently."""
    wf = WorkflowBuilder("w").add_step("s", "noop").build()

    @worker("noop")
    async def noop(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    async with make_runtime(workers=[noop], workflows=[wf]) as rt:
        with pytest.raises(SerializationError, match="key"):
            await rt.execute_workflow("w", {42: "answer", "order_id": 1})


async def test_condition_cannot_rewrite_the_recorded_input_or_outputs(
    make_runtime: Any, clock: FakeClock
) -> None:
    """A condition that changes the context it reads leaves the stored input and step outputs as they were."""

    @worker("load")
    async def load(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"items": [1, 2]}

    @worker("use")
    async def use(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    def has_items(ctx: dict[str, Any]) -> bool:
        ctx["items"].append(99)
        ctx["customer"]["vip"] = True
        return True

    wf = WorkflowBuilder("w").add_step("load", load).add_conditional(has_items, [Step("use", use)]).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {"customer": {"id": 1}}))
        stored = await rt.store.load(status["transaction_id"])
    assert stored is not None
    assert stored.input == {"customer": {"id": 1}}
    assert stored.steps["load"].execution.output == {"items": [1, 2]}


async def test_cancelled_error_raised_by_worker_code_fails_the_attempt_at_once(
    make_runtime: Any, clock: FakeClock
) -> None:
    """A CancelledError escaping worker code is an unexpected failure reported at once, not a lost attempt."""
    calls: list[int] = []

    @worker("fetch", timeout=30)
    async def fetch(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(step_info().attempt)
        raise asyncio.CancelledError()

    wf = WorkflowBuilder("w").add_step("fetch", fetch).build()
    async with make_runtime(workflows=[wf]) as rt:
        started = clock.now()
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.FAILED
    assert calls == [1]
    assert clock.now() - started < 30
    assert status["error"]["category"] != "timeout"


def test_sys_exit_in_a_sync_worker_fails_the_step_not_the_runtime(tmp_path: Path) -> None:
    """A sync worker calling sys.exit() fails its step; the runtime and its other workflows keep running."""
    script = tmp_path / "exits.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys
            from multiagents import Runtime, WorkflowBuilder, worker

            @worker("parse")
            def parse(ctx):
                sys.exit(2)  # a library that exits on input it cannot read

            async def main():
                wf = WorkflowBuilder("w").add_step("parse", parse).build()
                async with Runtime(workflows=[wf], store="memory://") as rt:
                    status = await rt.run("w", {}, timeout=10)
                    print("state", status["state"])

            asyncio.run(main())
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr[-500:]
    assert "state failed" in out.stdout


async def test_attempt_in_flight_at_every_restart_is_not_redispatched_forever(
    tmp_path: Path, clock: FakeClock
) -> None:
    """An attempt that dies with the process at every start counts against max_attempts; the workflow ends."""
    url = f"sqlite:///{tmp_path}/poison.db"
    calls: list[int] = []
    entered = asyncio.Event()

    @worker("poison")
    async def poison(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(step_info().attempt)
        entered.set()
        await asyncio.Event().wait()  # stands for a call that takes the whole process down
        return {}

    policy = RetryPolicy(max_attempts=2, jitter=0)
    wf = WorkflowBuilder("w").add_step("p", poison, retry_policy=policy, timeout=60).build()
    tid = None
    state = None
    for _ in range(6):
        entered.clear()
        async with Runtime(workflows=[wf], store=url, clock=clock) as rt:
            if tid is None:
                tid = await rt.execute_workflow("w", {})
            await clock.advance(0)
            state = (await rt.get_status(tid))["state"]
            if state.is_terminal:
                break
            await asyncio.wait_for(entered.wait(), 5)
    assert state is not None and state.is_terminal, f"still {state} after {len(calls)} deliveries"
    assert len(calls) <= 3


# ---- retries, breakers, timeouts ---------------------------------------------------------------


async def test_circuit_open_error_without_retry_after_does_not_spin(
    make_runtime: Any, clock: FakeClock
) -> None:
    """A worker raising CircuitBreakerOpenError without retry_after is parked a while, not resent at once."""
    calls: list[float] = []

    @worker("pay")
    async def pay(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(clock.now())
        raise CircuitBreakerOpenError("the payment gateway's breaker is open")

    wf = WorkflowBuilder("w").add_step("pay", pay).build()
    async with make_runtime(workflows=[wf]) as rt:
        await rt.execute_workflow("w", {})
        await clock.advance(0)  # no time passes
        dispatched = len(calls)
    assert dispatched <= 2, f"{dispatched} attempts within 0 seconds"


async def test_compensation_keeps_its_own_workers_timeout(make_runtime: Any, clock: FakeClock) -> None:
    """A step's timeout bounds the step; its compensation keeps the timeout its own worker declares."""
    refunds: list[float] = []

    @worker("charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"payment_id": "P1"}

    @worker("refund", timeout=120)
    async def refund(ctx: dict[str, Any]) -> dict[str, Any]:
        refunds.append(clock.now())
        await clock.sleep(30)  # the refund API is slow, and says so
        return {"refunded": ctx["payment_id"]}

    @worker("ship")
    async def ship(ctx: dict[str, Any]) -> dict[str, Any]:
        raise StepFailed("no carrier")

    wf = (
        WorkflowBuilder("w")
        .add_step("charge", charge, compensation=refund, timeout=5)
        .add_step("ship", ship)
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.COMPENSATED, status["steps"]["charge"]
    assert len(refunds) == 1


# ---- cancellation ------------------------------------------------------------------------------


async def test_cancel_during_a_failure_rollback_keeps_the_failure_outcome(
    make_runtime: Any, clock: FakeClock
) -> None:
    """A cancel that arrives while a failed saga is already compensating does not relabel it cancelled."""
    gate = asyncio.Event()

    @worker("reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"reservation_id": "R1"}

    @worker("release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return {}

    @worker("charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        raise StepFailed("card declined")

    wf = (
        WorkflowBuilder("w")
        .add_step("reserve", reserve, compensation=release)
        .add_step("charge", charge)
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        tid = await rt.execute_workflow("w", {})
        await clock.advance(0)
        assert (await rt.get_status(tid))["state"] == SagaState.COMPENSATING
        await rt.cancel_workflow(tid)
        gate.set()
        status = await clock.run_until(rt.wait(tid))
    assert status["error"]["message"] == "card declined"
    assert status["state"] == SagaState.COMPENSATED


async def test_compensation_cause_is_none_when_cancelled(make_runtime: Any, clock: FakeClock) -> None:
    """step_info().cause is None in a compensation run because the workflow was cancelled, as documented."""
    causes: list[Any] = []
    gate = asyncio.Event()

    @worker("reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"reservation_id": "R1"}

    @worker("release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        causes.append(step_info().cause)
        return {}

    @worker("charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return {}

    wf = (
        WorkflowBuilder("w")
        .add_step("reserve", reserve, compensation=release)
        .add_step("charge", charge)
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        tid = await rt.execute_workflow("w", {})
        await clock.advance(0)
        await rt.cancel_workflow(tid)
        gate.set()
        status = await clock.run_until(rt.wait(tid))
    assert status["state"] == SagaState.CANCELLED
    assert causes == [None]


# ---- error tracking ----------------------------------------------------------------------------


async def test_error_retention_applies_before_a_thousand_records(tmp_path: Path, clock: FakeClock) -> None:
    """With max_errors=5 and a 60 s retention, the log stays near its bounds as records accumulate."""

    @worker("bad")
    async def bad(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("bad input")

    wf = WorkflowBuilder("w").add_step("b", bad).build()
    url = f"sqlite:///{tmp_path}/errors.db"
    for _ in range(3):
        async with Runtime(workflows=[wf], store=url, clock=clock, max_errors=5, error_retention=60) as rt:
            for _ in range(20):
                await clock.run_until(rt.run("w", {}))
            await clock.advance(3600)
            kept = len(await rt.error_tracker.query())
    assert kept <= 5, f"{kept} records kept"


async def test_user_recorded_errors_are_all_kept_under_a_fake_clock(make_runtime: Any) -> None:
    """record_error on a runtime's tracker keeps every record, even when the clock does not move."""
    wf = WorkflowBuilder("w").add_step("s", "noop").build()

    @worker("noop")
    async def noop(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    async with make_runtime(workers=[noop], workflows=[wf]) as rt:
        tracker = rt.error_tracker

        def report(n: int) -> None:
            tracker.record_error(
                {"error_type": "connection_error", "worker_name": "svc", "error_message": str(n)}
            )

        for n in range(200):
            report(n)
        assert len(tracker.errors) == 200


# ---- the command line and the old API -----------------------------------------------------------


async def test_cli_status_of_a_workflow_whose_condition_raised(tmp_path: Path, clock: FakeClock) -> None:
    """`multiagents status` shows a workflow whose condition raised instead of crashing with a KeyError."""

    @worker("pay")
    async def pay(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"payment": None}

    def approved(ctx: dict[str, Any]) -> bool:
        return bool(ctx["payment"]["approved"])

    wf = (
        WorkflowBuilder("w")
        .add_step("pay", pay)
        .add_conditional(approved, [Step("ship", pay)], name="check")
        .build()
    )
    url = f"sqlite:///{tmp_path}/cond.db"
    async with Runtime(workflows=[wf], store=url, clock=clock) as rt:
        status = await clock.run_until(rt.run("w", {}))
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["status", status["transaction_id"], "--store", url]
    )
    assert result.exception is None, repr(result.exception)
    assert result.exit_code == 0
    assert "condition of 'check' raised" in result.output


def test_cli_list_does_not_write_into_a_foreign_sqlite_file(tmp_path: Path) -> None:
    """`multiagents list` on a SQLite file that is no multiagents store leaves that file as it was."""
    path = tmp_path / "crm.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()
    CliRunner().invoke(cli, ["list", "--store", f"sqlite:///{path}"])
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert tables == {"customers"}


def test_old_redis_event_bus_import_path_exists() -> None:
    """The old package's `from multiagents.event_bus.redis_bus import RedisEventBus` still resolves."""
    module = importlib.import_module("multiagents.event_bus.redis_bus")
    assert hasattr(module, "RedisEventBus")


async def test_two_old_orchestrators_on_one_event_bus_both_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two old-style Orchestrators sharing one event bus (one per workflow) both start and run."""
    monkeypatch.chdir(tmp_path)

    @worker("greet")
    async def greet(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"greeting": "hello"}

    @worker("add")
    async def add(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"sum": 3}

    bus = InMemoryEventBus()
    manager = WorkerManager(bus)
    manager.register(greet)
    manager.register(add)
    greeting = Orchestrator(WorkflowBuilder("greeting").add_step("g", "greet").build(), bus)
    adding = Orchestrator(WorkflowBuilder("adding").add_step("a", "add").build(), bus)
    await bus.start()
    await manager.start()
    try:
        await greeting.start()
        await adding.start()
        t1 = await greeting.execute_workflow("greeting", {})
        t2 = await adding.execute_workflow("adding", {})
        assert (await greeting.wait(t1, timeout=5))["state"] == SagaState.COMPLETED
        assert (await adding.wait(t2, timeout=5))["state"] == SagaState.COMPLETED
    finally:
        await adding.stop()
        await greeting.stop()
