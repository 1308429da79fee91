"""The status dict people and tools read for one workflow instance."""

from __future__ import annotations

from typing import Any

from multiagents.state import RunStatus, WorkflowInstance

__all__ = ["describe"]


def describe(inst: WorkflowInstance, order: tuple[str, ...] | None = None) -> dict[str, Any]:
    names = order or tuple(inst.steps)
    context = dict(inst.input)
    results: dict[str, Any] = {}
    for name in names:
        run = inst.steps[name].execution
        if run.status is RunStatus.DONE:
            results[name] = run.output
            context.update(run.output or {})
    steps = {}
    for name in names:
        sr = inst.steps[name]
        item: dict[str, Any] = {"status": sr.label, "attempts": sr.execution.attempt}
        if sr.execution.output is not None:
            item["output"] = sr.execution.output  # also for a step that failed by fail_if
        if sr.execution.error:
            item["error"] = sr.execution.error.get("message")
        if sr.execution.wake_at and sr.execution.status is RunStatus.WAITING:
            item["next_attempt_at"] = sr.execution.wake_at
        if sr.compensation is not None:
            item["compensation_attempts"] = sr.compensation.attempt
            if sr.compensation.output is not None:
                item["compensation_output"] = sr.compensation.output
            if sr.compensation.error:
                item["compensation_error"] = sr.compensation.error.get("message")
        steps[name] = item
    compensation_failures = [
        {"step": n, "error": (sr.compensation.error or {}).get("message")}
        for n, sr in inst.steps.items()
        if sr.compensation is not None and sr.compensation.status is RunStatus.FAILED
    ]
    return {
        "transaction_id": inst.transaction_id,
        "workflow_id": inst.workflow_id,
        "state": inst.state,
        "context": context,
        "step_results": results,
        "steps": steps,
        "error": inst.error,
        "compensation_failures": compensation_failures,
        "execution_history": [dict(e) for e in inst.history],
        "created_at": inst.created_at,
        "updated_at": inst.updated_at,
        "version": inst.version,
    }
