"""Section 6 of the error-handling patterns: recording every failure in one place and summarising it.

The seed writes its own ``ErrorTracker``; here it is the framework's (``from multiagents import
ErrorTracker``), whose standalone form keeps the seed's interface: ``record_error(dict)`` and
``get_error_summary()`` with the seed's keys (``total_errors``, ``recent_errors_1h``, ``error_rates``,
``top_error_patterns``, ``error_counts_by_type``). The global ``error_tracker``,
``error_reporting_worker`` and ``risky_operation`` are the seed's code, unchanged.

The seed's worker records what it catches, by hand. A Runtime keeps a tracker of its own,
``rt.error_tracker``, to which the engine records every failed attempt and failed compensation without
any code in the worker, in the seed's vocabulary (``error_type`` validation_error, connection_error,
unexpected_error, ...; ``severity`` medium, high, critical), in the store next to the workflows: a
Runtime started later on the same store reports the same summary.

The two trackers see different things. The seed's worker knows the cause of each failure before it
wraps it in ``WorkerExecutionError``; the engine sees only what the worker raised, so it records the
two wrapped failures as ``permanent_error``. :func:`plain_risky_worker` runs the same
``risky_operation`` with no error handling at all: the engine then records ``connection_error`` once
per attempt (it is transient, so retried three times) and ``unexpected_error`` for the ``RuntimeError``.

Run it from the project root: ``python -m examples.error_tracking`` (or ``python examples/error_tracking.py``).
"""

# The seed's code is kept as written: typing.Dict annotations, `raise ...` inside `except` without `from`,
# and `str(e)` inside f-strings stay.
# ruff: noqa: UP006, UP035, B904, RUF010

from __future__ import annotations

import asyncio
from typing import Any, Dict

from multiagents import Clock, ErrorTracker, RetryPolicy, Runtime, WorkflowBuilder, WorkflowDefinition, worker
from multiagents.core.exceptions import WorkerExecutionError

# ---- the seed's code ----------------------------------------------------------------------------

# Global error tracker
error_tracker = ErrorTracker()


@worker("error_reporting_worker")
async def error_reporting_worker(context: Dict[str, Any]) -> Dict[str, Any]:
    """Worker that demonstrates error reporting integration."""

    try:
        # Simulate work that might fail
        data = context["data"]
        result = risky_operation(data)

        return {"result": result, "status": "success"}

    except ValueError as e:
        # Record validation error
        error_tracker.record_error(
            {
                "error_type": "validation_error",
                "worker_name": "error_reporting_worker",
                "error_message": str(e),
                "context_data": context,
                "severity": "medium",
            }
        )
        raise e

    except ConnectionError as e:
        # Record connection error
        error_tracker.record_error(
            {
                "error_type": "connection_error",
                "worker_name": "error_reporting_worker",
                "error_message": str(e),
                "context_data": context,
                "severity": "high",
                "retry_recommended": True,
            }
        )
        raise WorkerExecutionError(f"Connection failed: {str(e)}")

    except Exception as e:
        # Record unexpected error
        error_tracker.record_error(
            {
                "error_type": "unexpected_error",
                "worker_name": "error_reporting_worker",
                "error_message": str(e),
                "context_data": context,
                "severity": "critical",
            }
        )
        raise WorkerExecutionError(f"Unexpected error: {str(e)}")


# Helper functions for error tracking (stubs)
def risky_operation(data):
    """Simulate operation that might fail."""
    if not data:
        raise ValueError("Data cannot be empty")
    if data == "connection_fail":
        raise ConnectionError("Failed to connect to service")
    if data == "unexpected":
        raise RuntimeError("Something unexpected happened")
    return f"Processed: {data}"


# ---- the same operation with no error handling -------------------------------------------------


@worker("plain_risky_worker")
async def plain_risky_worker(context: Dict[str, Any]) -> Dict[str, Any]:
    """risky_operation and nothing else: whatever it raises reaches the engine, which records it."""
    return {"result": risky_operation(context["data"]), "status": "success"}


# ---- running it ---------------------------------------------------------------------------------

WORKERS = [error_reporting_worker, plain_risky_worker]
INPUTS = ["ok", "", "connection_fail", "unexpected"]
# Short waits, so that the demo's three attempts at a connection failure take a fraction of a second.
PLAIN_POLICY = RetryPolicy(max_attempts=3, initial_interval=0.1, backoff_coefficient=2, jitter=0)


def create_reporting_workflow() -> WorkflowDefinition:
    return WorkflowBuilder("report_errors").add_step("risky", error_reporting_worker).build()


def create_plain_workflow() -> WorkflowDefinition:
    return (
        WorkflowBuilder("plain_risky")
        .add_step("risky", plain_risky_worker, retry_policy=PLAIN_POLICY)
        .build()
    )


def create_workflows() -> list[WorkflowDefinition]:
    return [create_reporting_workflow(), create_plain_workflow()]


def summarise(status: dict[str, Any]) -> dict[str, Any]:
    error = status["error"] or {}
    return {
        "state": status["state"].value,
        "attempts": status["steps"]["risky"]["attempts"],
        "result": (status["step_results"].get("risky") or {}).get("result"),
        "error_category": error.get("category"),
        "error": error.get("message"),
    }


def engine_record(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of an engine record worth showing; the full record also has the traceback and context."""
    keys = ("workflow_id", "step", "worker_name", "attempt", "error_type", "severity", "error_message")
    return {key: record[key] for key in keys}


async def main(store: str = "memory://", clock: Clock | None = None) -> dict[str, Any]:
    """Run both workflows on each of :data:`INPUTS`; returns the runs, the seed tracker's summary, and
    the engine's records (run by run, attempt by attempt) and summary.

    With a ``FakeClock`` (in tests, ``clock.run_until(main(clock=clock))``) the retries take no time.
    """
    global error_tracker
    # Start from an empty tracker, so that running main twice does not count twice.
    error_tracker = ErrorTracker()
    runs: dict[str, dict[str, dict[str, Any]]] = {"report_errors": {}, "plain_risky": {}}
    async with Runtime(workers=WORKERS, workflows=create_workflows(), store=store, clock=clock) as rt:
        records: list[dict[str, Any]] = []
        for workflow_id, by_input in runs.items():
            for data in INPUTS:
                status = await rt.run(workflow_id, {"data": data})
                by_input[data] = summarise(status)
                found = await rt.error_tracker.query(transaction_id=status["transaction_id"])
                records += [engine_record(r) for r in sorted(found, key=lambda r: r["attempt"])]
        engine_summary = rt.error_tracker.get_error_summary()
    return {
        "runs": runs,
        "summary": error_tracker.get_error_summary(),
        "engine_records": records,
        "engine_summary": engine_summary,
    }


def print_tracker_summary(title: str, summary: dict[str, Any]) -> None:
    print(f"{title}: {summary['total_errors']} error(s) (last hour: {summary.get('recent_errors_1h', 0)})")
    for error_type, rate in summary.get("error_rates", {}).items():
        print(f"    {error_type}: {summary['error_counts_by_type'][error_type]} ({rate:.0f}%)")
    print(f"    top patterns: {summary.get('top_error_patterns', [])}")


def print_summary(outcome: dict[str, Any]) -> None:
    for workflow_id, by_input in outcome["runs"].items():
        print(f"{workflow_id}:")
        for data, run in by_input.items():
            detail = run["result"] or f"[{run['error_category']}] {run['error']}"
            print(f"    data={data!r}: {run['state']} after {run['attempts']} attempt(s): {detail}")
    print_tracker_summary("recorded by the seed's worker (error_tracker)", outcome["summary"])
    print_tracker_summary("recorded by the engine (rt.error_tracker)", outcome["engine_summary"])
    for r in outcome["engine_records"]:
        print(
            f"    {r['workflow_id']}/{r['step']} attempt {r['attempt']} ({r['worker_name']}): "
            f"{r['error_type']}, {r['severity']}: {r['error_message']}"
        )


if __name__ == "__main__":
    print_summary(asyncio.run(main()))
