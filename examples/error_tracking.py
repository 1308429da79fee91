"""Section 6 of the error-handling patterns: recording every failure in one place and summarising it.

``ErrorTracker``, the global ``error_tracker``, ``error_reporting_worker`` and ``risky_operation`` are the
seed's code. ``datetime.utcnow()`` (deprecated since Python 3.12, and naive) became ``datetime.now(UTC)``
in all three places, so ``recorded_at`` is timezone-aware and the one-hour window in
``get_error_summary`` compares aware times with aware times.

Each failure is recorded exactly once: a ``ValueError`` is a validation failure and a
``WorkerExecutionError`` is permanent, so the engine retries neither.

Run it from the project root: ``python -m examples.error_tracking`` (or ``python examples/error_tracking.py``).
"""

# The seed's code is kept as written: typing.Dict annotations, `raise ...` inside `except` without `from`,
# and `str(e)` inside f-strings stay.
# ruff: noqa: UP006, UP035, B904, RUF010

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Dict

from multiagents import Runtime, WorkflowBuilder, WorkflowDefinition, worker
from multiagents.core.exceptions import WorkerExecutionError

# ---- the seed's code ----------------------------------------------------------------------------


# Centralized error tracking and reporting
class ErrorTracker:
    """Track and analyze errors across workflows."""

    def __init__(self):
        self.errors = []
        self.error_counts = {}
        self.error_patterns = {}

    def record_error(self, error_info: Dict[str, Any]):
        """Record an error occurrence."""
        self.errors.append({**error_info, "recorded_at": datetime.now(UTC).isoformat()})

        # Update error counts
        error_type = error_info.get("error_type", "unknown")
        self.error_counts[error_type] = self.error_counts.get(error_type, 0) + 1

        # Update error patterns
        worker_name = error_info.get("worker_name", "unknown")
        pattern_key = f"{worker_name}:{error_type}"
        self.error_patterns[pattern_key] = self.error_patterns.get(pattern_key, 0) + 1

    def get_error_summary(self) -> Dict[str, Any]:
        """Get error summary report."""
        total_errors = len(self.errors)

        if total_errors == 0:
            return {"status": "no_errors", "total_errors": 0}

        # Calculate error rates by type
        error_rates = {
            error_type: (count / total_errors) * 100 for error_type, count in self.error_counts.items()
        }

        # Find most problematic patterns
        top_patterns = sorted(self.error_patterns.items(), key=lambda x: x[1], reverse=True)[:5]

        # Recent error trend
        recent_errors = [
            error
            for error in self.errors
            if (
                datetime.now(UTC) - datetime.fromisoformat(error["recorded_at"].replace("Z", "+00:00"))
            ).total_seconds()
            < 3600
        ]

        return {
            "total_errors": total_errors,
            "recent_errors_1h": len(recent_errors),
            "error_rates": error_rates,
            "top_error_patterns": top_patterns,
            "error_counts_by_type": self.error_counts,
            "summary_generated_at": datetime.now(UTC).isoformat(),
        }


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


# ---- running it ---------------------------------------------------------------------------------

WORKERS = [error_reporting_worker]
INPUTS = ["ok", "", "connection_fail", "unexpected"]


def create_reporting_workflow() -> WorkflowDefinition:
    return WorkflowBuilder("report_errors").add_step("risky", error_reporting_worker).build()


async def main(store: str = "memory://") -> dict[str, Any]:
    """Run the worker on each of :data:`INPUTS`; returns each run's outcome and the tracker's summary."""
    # Start from an empty tracker, so that running main twice does not count twice.
    error_tracker.__init__()
    wf = create_reporting_workflow()
    runs: dict[str, dict[str, Any]] = {}
    async with Runtime(workers=WORKERS, workflows=[wf], store=store) as rt:
        for data in INPUTS:
            status = await rt.run(wf.id, {"data": data})
            error = status["error"] or {}
            runs[data] = {
                "state": status["state"].value,
                "attempts": status["steps"]["risky"]["attempts"],
                "result": (status["step_results"].get("risky") or {}).get("result"),
                "error_category": error.get("category"),
                "error": error.get("message"),
            }
    return {"runs": runs, "summary": error_tracker.get_error_summary()}


def print_summary(outcome: dict[str, Any]) -> None:
    for data, run in outcome["runs"].items():
        detail = run["result"] or f"[{run['error_category']}] {run['error']}"
        print(f"data={data!r}: {run['state']} after {run['attempts']} attempt(s): {detail}")
    summary = outcome["summary"]
    print(f"errors recorded: {summary['total_errors']} (last hour: {summary['recent_errors_1h']})")
    for error_type, rate in summary["error_rates"].items():
        print(f"    {error_type}: {summary['error_counts_by_type'][error_type]} ({rate:.0f}%)")
    print(f"top patterns: {summary['top_error_patterns']}")


if __name__ == "__main__":
    print_summary(asyncio.run(main()))
