"""Circuit breakers in the engine: an open breaker parks a step instead of dispatching it."""

from __future__ import annotations

from typing import Any

from multiagents import FakeClock, RetryPolicy, SagaState, WorkflowBuilder, worker
from multiagents.resilience import CircuitBreaker, CircuitState


async def test_open_breaker_parks_the_step_without_spending_attempts(make_runtime, clock: FakeClock):
    """After the breaker opens, the step is not sent; it runs when the breaker half-opens, attempts intact."""
    calls: list[float] = []

    @worker("charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(clock.now())
        if len(calls) <= 2:
            raise ConnectionError("payment gateway unreachable")
        return {"payment_id": "P1"}

    policy = RetryPolicy(max_attempts=4, initial_interval=1, backoff_coefficient=1, jitter=0)
    wf = (
        WorkflowBuilder("pay")
        .add_step("charge", charge, retry_policy=policy, circuit_breaker="payment_service")
        .build()
    )
    breaker = CircuitBreaker("payment_service", failure_threshold=2, recovery_timeout=30)
    async with make_runtime(workflows=[wf], breakers=[breaker]) as rt:
        tid = await rt.execute_workflow("pay", {})
        await clock.run_until(_until_parked(rt, tid))
        parked = await rt.get_status(tid)
        assert parked["steps"]["charge"]["status"] == "parked"
        assert parked["breakers"]["payment_service"]["state"] == CircuitState.OPEN
        status = await clock.run_until(rt.wait(tid))
        summary = rt.error_tracker.get_error_summary()
    assert status["state"] == SagaState.COMPLETED
    assert len(calls) == 3  # the parked dispatch never reached the worker
    start = calls[0]
    assert calls[1] - start == 1.0
    assert calls[2] - start >= 1.0 + 30  # only after the breaker half-opened
    runs = [e for e in status["execution_history"] if e["step"] == "charge"]
    assert [(e["attempt"], e["status"]) for e in runs] == [
        (1, "failed"),
        (2, "failed"),
        (3, "parked"),
        (3, "completed"),
    ]
    assert summary["error_counts_by_type"]["circuit_open"] >= 1
    assert summary["error_counts_by_type"]["circuit_opened"] == 1  # the breaker's own transition
    assert [t["new"] for t in parked["breakers"]["payment_service"]["transitions"]] == ["open"]
    assert breaker.state == CircuitState.CLOSED


async def _until_parked(rt, tid: str) -> None:
    while (await rt.get_status(tid))["steps"]["charge"]["status"] != "parked":
        await rt.clock.sleep(0.5)


async def test_unconfigured_breaker_name_gets_defaults(make_runtime, clock):
    """A step naming a breaker nobody configured is guarded by a breaker with the default settings."""

    @worker("ok")
    async def ok(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder("w").add_step("s", ok, circuit_breaker="somewhere").build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
        snapshot = (await rt.get_status(status["transaction_id"]))["breakers"]["somewhere"]
    assert status["state"] == SagaState.COMPLETED
    assert snapshot["state"] == CircuitState.CLOSED
    assert rt.breakers.get("somewhere").failure_threshold == 5


async def test_the_engine_tells_the_worker_side_which_attempt_is_the_probe(make_runtime, clock: FakeClock):
    """Commands let through a half-open breaker carry probe=True; those let through a closed one, False."""
    seen: list[bool | None] = []

    @worker("svc_call")
    async def svc_call(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder("w").add_step("s", svc_call, circuit_breaker="svc").build()
    breaker = CircuitBreaker("svc", failure_threshold=1, recovery_timeout=10)
    rt = make_runtime(workflows=[wf], breakers=[breaker])
    original = rt.bus.send_commands

    async def spy(commands):  # type: ignore[no-untyped-def]
        seen.extend(c.probe for c in commands)
        await original(commands)

    rt.bus.send_commands = spy  # type: ignore[method-assign]
    async with rt:
        await clock.run_until(rt.run("w", {}))
        await breaker.record_failure(ConnectionError("down"))
        await clock.advance(10)
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.COMPLETED
    assert seen == [False, True]
    assert breaker.state == CircuitState.CLOSED
