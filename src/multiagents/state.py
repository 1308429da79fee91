"""The durable state of one workflow instance, as the state machine sees and the stores keep it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["TERMINAL_STATES", "Run", "RunStatus", "SagaState", "StepRun", "WorkflowInstance"]


class SagaState(StrEnum):
    """A workflow's state. Terminal: completed, compensated, failed, compensation_failed, cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"
    COMPENSATION_FAILED = "compensation_failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        SagaState.COMPLETED,
        SagaState.COMPENSATED,
        SagaState.FAILED,
        SagaState.COMPENSATION_FAILED,
        SagaState.CANCELLED,
    }
)


class RunStatus(StrEnum):
    """Where one phase (execution or compensation) of one step stands."""

    PENDING = "pending"  # not dispatched yet
    RUNNING = "running"  # an attempt is out; wake_at is its lease
    WAITING = "waiting"  # waiting to retry (or parked behind an open breaker) until wake_at
    DONE = "done"  # succeeded: completed, or compensated
    FAILED = "failed"  # gave up
    SKIPPED = "skipped"  # on the conditional path not taken
    ABANDONED = "abandoned"  # was waiting to retry when the saga began rolling back


@dataclass(slots=True)
class Run:
    status: RunStatus = RunStatus.PENDING
    attempt: int = 0  # attempts that count against the retry policy
    dispatches: int = 0  # every dispatch, parked retries included; names the attempt id
    attempt_id: str | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    wake_at: float | None = None
    parked: bool = False

    def copy(self) -> Run:
        # Hand-written: dataclasses.replace is several times slower and this runs on every transition.
        return Run(
            self.status,
            self.attempt,
            self.dispatches,
            self.attempt_id,
            self.output,
            self.error,
            self.wake_at,
            self.parked,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "attempt": self.attempt,
            "dispatches": self.dispatches,
            "attempt_id": self.attempt_id,
            "output": self.output,
            "error": self.error,
            "wake_at": self.wake_at,
            "parked": self.parked,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Run:
        return cls(
            status=RunStatus(d["status"]),
            attempt=d["attempt"],
            dispatches=d["dispatches"],
            attempt_id=d["attempt_id"],
            output=d["output"],
            error=d["error"],
            wake_at=d["wake_at"],
            parked=d.get("parked", False),
        )


@dataclass(slots=True)
class StepRun:
    execution: Run = field(default_factory=Run)
    compensation: Run | None = None

    def clone(self) -> StepRun:
        comp = self.compensation
        return StepRun(self.execution.copy(), None if comp is None else comp.copy())

    @property
    def label(self) -> str:
        """The one word people see for this step."""
        comp = self.compensation
        if comp is not None and comp.status is not RunStatus.PENDING:
            return {
                RunStatus.DONE: "compensated",
                RunStatus.FAILED: "compensation_failed",
                RunStatus.RUNNING: "compensating",
                RunStatus.WAITING: "compensating",
            }.get(comp.status, "compensating")
        ex = self.execution
        if ex.status is RunStatus.DONE:
            return "completed"
        if ex.status is RunStatus.WAITING:
            return "parked" if ex.parked else "retrying"
        return ex.status.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution": self.execution.to_dict(),
            "compensation": None if self.compensation is None else self.compensation.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepRun:
        comp = d.get("compensation")
        return cls(Run.from_dict(d["execution"]), None if comp is None else Run.from_dict(comp))


@dataclass(slots=True)
class WorkflowInstance:
    transaction_id: str
    workflow_id: str
    fingerprint: str
    input: dict[str, Any]
    steps: dict[str, StepRun]
    state: SagaState = SagaState.PENDING
    history: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 0
    completion_order: list[str] = field(default_factory=list)
    decisions: dict[str, bool] = field(default_factory=dict)
    cancel_requested: bool = False
    compensation_queue: list[str] | None = None
    compensation_context: dict[str, Any] | None = None

    def clone(self) -> WorkflowInstance:
        """A copy the machine may change without touching this one (shared values are never mutated)."""
        return WorkflowInstance(
            transaction_id=self.transaction_id,
            workflow_id=self.workflow_id,
            fingerprint=self.fingerprint,
            input=self.input,
            steps={k: v.clone() for k, v in self.steps.items()},
            state=self.state,
            history=list(self.history),
            error=self.error,
            created_at=self.created_at,
            updated_at=self.updated_at,
            version=self.version,
            completion_order=list(self.completion_order),
            decisions=dict(self.decisions),
            cancel_requested=self.cancel_requested,
            compensation_queue=None if self.compensation_queue is None else list(self.compensation_queue),
            compensation_context=self.compensation_context,
        )

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def winding_down(self) -> bool:
        """Rolling back: a step failed for good, or the workflow was cancelled."""
        return self.state is SagaState.COMPENSATING

    @property
    def wake_at(self) -> float | None:
        """When a timer of this instance is next due (a lease or a retry), or None."""
        best: float | None = None
        for sr in self.steps.values():
            for run in (sr.execution, sr.compensation):
                if (
                    run is not None
                    and run.wake_at is not None
                    and run.status in (RunStatus.RUNNING, RunStatus.WAITING)
                    and (best is None or run.wake_at < best)
                ):
                    best = run.wake_at
        return best

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "workflow_id": self.workflow_id,
            "fingerprint": self.fingerprint,
            "input": self.input,
            "steps": {k: v.to_dict() for k, v in self.steps.items()},
            "state": self.state.value,
            "history": self.history,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "completion_order": self.completion_order,
            "decisions": self.decisions,
            "cancel_requested": self.cancel_requested,
            "compensation_queue": self.compensation_queue,
            "compensation_context": self.compensation_context,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkflowInstance:
        return cls(
            transaction_id=d["transaction_id"],
            workflow_id=d["workflow_id"],
            fingerprint=d["fingerprint"],
            input=d["input"],
            steps={k: StepRun.from_dict(v) for k, v in d["steps"].items()},
            state=SagaState(d["state"]),
            history=d["history"],
            error=d["error"],
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            version=d["version"],
            completion_order=d["completion_order"],
            decisions=d["decisions"],
            cancel_requested=d["cancel_requested"],
            compensation_queue=d["compensation_queue"],
            compensation_context=d["compensation_context"],
        )
