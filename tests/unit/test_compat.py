"""The old package's surface runs on the durable engine, and the package imports without extras."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from multiagents import InMemoryEventBus, Orchestrator, SagaState, WorkerManager, WorkflowBuilder, worker
from multiagents.core.exceptions import WorkerExecutionError


async def test_old_orchestrator_api_compensates(tmp_path):
    """Orchestrator(workflow, bus) + WorkerManager.register run a saga whose compensation really runs."""
    undone: list[str] = []

    @worker("reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"reservation_id": "R1"}

    @worker("release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        undone.append(ctx["reservation_id"])
        return {"compensation_status": "success"}

    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:  # a plain function, registered by name
        raise WorkerExecutionError("card declined")

    wf = (
        WorkflowBuilder("order")
        .add_step("reserve", "reserve", compensation="release")
        .add_step("charge", "charge")
        .build()
    )
    bus = InMemoryEventBus()
    await bus.start()
    manager = WorkerManager(bus)
    for fn in (reserve, release, charge):
        manager.register(fn)
    await manager.start()
    orchestrator = Orchestrator(wf, bus, state_store=f"sqlite:///{tmp_path / 'old.db'}")
    await orchestrator.start()
    try:
        tid = await orchestrator.execute_workflow(wf.get_id(), {"order_id": 1})
        status = await orchestrator.wait(tid, timeout=10)
        assert status["state"] == SagaState.COMPENSATED
        assert (await orchestrator.get_status(tid))["state"] == "compensated"
        assert undone == ["R1"]
        assert await orchestrator.cancel_workflow(tid) is False
    finally:
        await orchestrator.stop()


def test_saga_state_values_match_the_old_package():
    """SagaState keeps the old values and adds compensation_failed."""
    assert {s.value for s in SagaState} == {
        "pending",
        "running",
        "completed",
        "failed",
        "compensating",
        "compensated",
        "cancelled",
        "compensation_failed",
    }


def test_import_needs_no_optional_backends():
    """`import multiagents` loads no Redis, Postgres or telemetry module."""
    code = (
        "import sys, multiagents, multiagents.core.exceptions;"
        "extras=('redis','asyncpg','psycopg','prometheus_client','opentelemetry');"
        "bad=[m for m in extras if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
