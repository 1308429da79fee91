"""The engine records every failed attempt and compensation; the tracker summarises them durably."""

from __future__ import annotations

import random
from typing import Any

from multiagents import FakeClock, RetryPolicy, Runtime, SagaState, WorkflowBuilder, worker
from multiagents.core.exceptions import WorkerExecutionError
from multiagents.tracking import ErrorTracker, redact

FAST = RetryPolicy(max_attempts=3, initial_interval=1, jitter=0)


def build(fail: dict[str, Any]):
    @worker("validate")
    async def validate(ctx: dict[str, Any]) -> dict[str, Any]:
        if ctx["kind"] == "invalid":
            raise ValueError("amount must be a non-negative number")
        return {"validated": True}

    @worker("call_service")
    async def call_service(ctx: dict[str, Any]) -> dict[str, Any]:
        if ctx["kind"] == "flaky":
            raise ConnectionError("Failed to connect to service")
        if ctx["kind"] == "crash":
            raise RuntimeError("Something unexpected happened")
        return {"response": "ok"}

    @worker("undo_validate")
    async def undo_validate(ctx: dict[str, Any]) -> dict[str, Any]:
        if fail.get("undo"):
            return {"compensation_status": "failed", "requires_manual_intervention": True}
        return {}

    wf = (
        WorkflowBuilder("svc")
        .add_step("validate", validate, compensation=undo_validate, retry_policy=FAST)
        .add_step("call", call_service, retry_policy=FAST)
        .build()
    )
    return wf


async def run_batch(store: str, clock: FakeClock, kinds: list[str], fail: dict[str, Any]) -> list[str]:
    async with Runtime(workflows=[build(fail)], store=store, clock=clock, rng=random.Random(1)) as rt:
        tids = [await rt.execute_workflow("svc", {"kind": k, "api_key": "sk-123"}) for k in kinds]
        for tid in tids:
            await clock.run_until(rt.wait(tid))
        return tids


async def test_summary_counts_match_what_happened_across_a_restart(tmp_path):
    """After mixed failures, the summary's counts are exact, and a new Runtime on the file sees them."""
    store = f"sqlite:///{tmp_path / 'errors.db'}"
    clock = FakeClock()
    await run_batch(store, clock, ["ok", "invalid", "flaky", "crash"], {"undo": True})
    async with Runtime(workflows=[build({})], store=store, clock=clock) as rt:
        summary = rt.error_tracker.get_error_summary()
        assert summary == await rt.error_tracker.summary()
        # invalid: 1 validation; flaky: 3 connection attempts, then its compensation fails; crash: 1
        # unexpected, then its compensation fails.
        assert summary["error_counts_by_type"] == {
            "validation_error": 1,
            "connection_error": 3,
            "unexpected_error": 1,
            "compensation_failed": 2,
        }
        assert summary["total_errors"] == 7
        assert summary["recent_errors_1h"] == 7
        assert summary["top_error_patterns"][0] == ("call_service:connection_error", 3)
        assert round(sum(summary["error_rates"].values())) == 100
        attention = await rt.error_tracker.needs_attention()
        assert len(attention) == 2
        assert {s["state"] for s in attention} == {SagaState.COMPENSATION_FAILED}
        only_call = rt.error_tracker.get_error_summary(step="call")
        assert only_call["total_errors"] == 4
        records = await rt.error_tracker.query(category="validation")
        assert len(records) == 1
        rec = records[0]
        assert rec["worker_name"] == "validate" and rec["attempt"] == 1
        assert rec["severity"] == "medium"
        assert rec["exception_type"] == "ValueError"
        assert rec["context_data"]["api_key"] == "***"
        assert "ValueError" in rec["traceback"]


async def test_user_recorded_errors_join_the_summary(make_runtime):
    """record_error(dict) in the seed's style lands in the same log as the engine's records."""
    wf = WorkflowBuilder("w").add_step("s", "noop").build()

    @worker("noop")
    async def noop(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    async with make_runtime(workers=[noop], workflows=[wf]) as rt:
        rt.error_tracker.record_error(
            {"error_type": "connection_error", "worker_name": "seed_worker", "error_message": "down"}
        )
        summary = rt.error_tracker.get_error_summary()
    assert summary["error_counts_by_type"] == {"connection_error": 1}
    assert summary["top_error_patterns"] == [("seed_worker:connection_error", 1)]


def test_standalone_tracker_keeps_the_seeds_interface():
    """ErrorTracker() alone works as the seed's class: in-process records, same summary keys."""
    tracker = ErrorTracker()
    assert tracker.get_error_summary() == {"status": "no_errors", "total_errors": 0}
    for et in ("validation_error", "validation_error", "unexpected_error"):
        tracker.record_error({"error_type": et, "worker_name": "w", "severity": "low"})
    summary = tracker.get_error_summary()
    assert summary["total_errors"] == 3
    assert summary["error_counts_by_type"] == {"validation_error": 2, "unexpected_error": 1}
    assert summary["top_error_patterns"][0] == ("w:validation_error", 2)
    assert {e["severity"] for e in tracker.errors} == {"low"}


async def test_retention_bounds_the_log(make_runtime, clock):
    """prune() drops records beyond max_errors and older than the retention window."""

    @worker("bad")
    async def bad(ctx: dict[str, Any]) -> dict[str, Any]:
        raise WorkerExecutionError("no")

    wf = WorkflowBuilder("w").add_step("s", bad).build()
    async with make_runtime(workflows=[wf], max_errors=3, error_retention=3600) as rt:
        for _ in range(5):
            await clock.run_until(rt.run("w", {}))
        assert len(await rt.error_tracker.query()) == 5
        assert await rt.error_tracker.prune() == 2
        assert len(await rt.error_tracker.query()) == 3
        await clock.advance(7200)
        assert await rt.error_tracker.prune() == 3
        assert await rt.error_tracker.query() == []


def test_redact_masks_secrets_and_caps_size():
    """Secret-looking keys are masked at any depth and a large context is cut to the limit."""
    out = redact({"password": "x", "nested": {"card_number": "4111"}, "big": "y" * 5000})
    assert out["password"] == "***" and out["nested"]["card_number"] == "***"
    assert len(out["big"]) < 300
    many = redact({f"k{i}": "v" * 100 for i in range(100)}, limit=1000)
    assert len(many) < 20 and "…" in many


async def test_errors_ride_in_the_transition_commit(clock):
    """The engine writes error records inside the same commit as the transition: no extra store call."""
    from multiagents.store.memory import MemoryStore

    class CountingStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.commits = 0
            self.error_writes = 0
            self.errors_in_commits = 0

        async def commit(self, transitions):
            self.commits += 1
            self.errors_in_commits += sum(len(t.errors) for t in transitions)
            await super().commit(transitions)

        async def record_errors(self, records):
            self.error_writes += 1
            await super().record_errors(records)

    @worker("flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("down")

    store = CountingStore()
    wf = WorkflowBuilder("w").add_step("s", flaky, retry_policy=FAST).build()
    async with Runtime(workflows=[wf], store=store, clock=clock) as rt:
        tid = await rt.execute_workflow("w", {})
        status = await clock.run_until(rt.wait(tid))
    assert status["state"] == SagaState.FAILED
    assert store.errors_in_commits == 3
    assert store.error_writes == 0
    # one commit per transition: start, three failures (the last one ends the workflow), two retry timers
    assert store.commits == 6
