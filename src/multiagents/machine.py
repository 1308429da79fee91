"""The saga state machine: a pure ``decide(instance, event, definition, now, rng)``.

Everything the engine decides is decided here, from data: which steps to dispatch, what a result or
an expired lease means, when to retry, when to roll back and in what order, which state is final.
No I/O, no clock, no randomness of its own: the shell passes ``now`` and ``rng`` in, persists the
returned instance, and carries out the returned effects. Hand-written because this is the part no
library does for us: a durable saga with leases, retries as timers, and reverse-order compensation.

Invariants (checked by the hypothesis tests in tests/unit/test_machine_properties.py):
- a step completes at most once; a result for an attempt that is no longer current is recorded and
  ignored;
- compensations run only for completed steps that declare one, one at a time, in reverse completion
  order, and only after every in-flight attempt has settled;
- every non-terminal instance has a timer (a lease or a retry) or an attempt in flight, so no lost
  message can keep it waiting forever.
"""

from __future__ import annotations

import random
from typing import Any

from multiagents._json import dumps, loads
from multiagents.errors import ErrorCategory, ErrorInfo
from multiagents.events import (
    Cancel,
    Dispatch,
    Effect,
    Event,
    Finish,
    RecordError,
    Resume,
    RetryCompensations,
    Start,
    Tick,
    lease_grace,
)
from multiagents.history import attempt_entry, close_entry, ignored_entry, note
from multiagents.messages import Command, Kind, Result
from multiagents.outcomes import business_failure, compensation_refusal
from multiagents.policy import RetryPolicy, compute_backoff
from multiagents.state import Run, RunStatus, SagaState, StepRun, WorkflowInstance
from multiagents.tracking import error_record
from multiagents.workflow import Conditional, Parallel, Step, WorkflowDefinition

__all__ = [
    "Cancel",
    "Dispatch",
    "Effect",
    "Event",
    "Finish",
    "RecordError",
    "Resume",
    "RetryCompensations",
    "Start",
    "Tick",
    "decide",
    "lease_grace",
    "new_instance",
]


def new_instance(
    definition: WorkflowDefinition, transaction_id: str, context: dict[str, Any], now: float
) -> WorkflowInstance:
    return WorkflowInstance(
        transaction_id=transaction_id,
        workflow_id=definition.id,
        fingerprint=definition.fingerprint,
        input=context,
        steps={name: StepRun() for name in definition.order},
        created_at=now,
        updated_at=now,
    )


def decide(
    instance: WorkflowInstance,
    event: Event,
    definition: WorkflowDefinition,
    now: float,
    rng: random.Random,
) -> tuple[WorkflowInstance, list[Effect]]:
    """Apply ``event``; return the next instance and the effects to carry out.

    The given instance is never modified. When the event changes nothing (a stale timer), the same
    instance object is returned with no effects, so the shell can skip the write.
    """
    if instance.is_terminal and not isinstance(event, RetryCompensations):
        if isinstance(event, Result):
            # A straggler after the end: record it, decide nothing.
            inst = instance.clone()
            inst.history.append(ignored_entry(event, now, "arrived after the workflow finished"))
            inst.version += 1
            inst.updated_at = now
            return inst, []
        return instance, []
    m = _Machine(instance.clone(), definition, now, rng)
    m.apply(event)
    if not m.changed:
        return instance, []
    m.advance()
    m.inst.version = instance.version + 1
    m.inst.updated_at = now
    return m.inst, m.effects


class _Machine:
    """One transition's working state; mutates only its own clone of the instance."""

    def __init__(
        self, inst: WorkflowInstance, definition: WorkflowDefinition, now: float, rng: random.Random
    ) -> None:
        self.inst = inst
        self.defn = definition
        self.now = now
        self.rng = rng
        self.effects: list[Effect] = []
        self.changed = False
        self.result_context: dict[str, Any] | None = None  # the failing attempt's input snapshot

    # ---- applying events ----------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        if isinstance(event, Result):
            self._on_result(event)
        elif isinstance(event, Tick):
            self._on_tick()
        elif isinstance(event, Start):
            self.changed = self.inst.state is SagaState.PENDING
        elif isinstance(event, Cancel):
            self._on_cancel(event)
        elif isinstance(event, RetryCompensations):
            self._on_retry_compensations()
        elif isinstance(event, Resume):
            self._on_resume()

    def _on_result(self, r: Result) -> None:
        self.changed = True
        self.result_context = r.context
        sr = self.inst.steps.get(r.step)
        run = None if sr is None else (sr.execution if r.kind is Kind.EXECUTE else sr.compensation)
        if run is None or run.status is not RunStatus.RUNNING or run.attempt_id != r.attempt_id:
            why = "unknown step" if sr is None else "a late or duplicate result for a superseded attempt"
            self.inst.history.append(ignored_entry(r, self.now, why))
            return
        assert sr is not None
        if r.kind is Kind.EXECUTE:
            self._on_execution_result(r.step, sr, r)
        else:
            self._on_compensation_result(r.step, sr, r)

    def _on_execution_result(self, name: str, sr: StepRun, r: Result) -> None:
        run = sr.execution
        error = r.error
        if error is None:
            output = r.output or {}
            error = business_failure(self.defn.steps[name], output)
            if error is None:
                run.status, run.output, run.wake_at, run.error = RunStatus.DONE, output, None, None
                self.inst.completion_order.append(name)
                self._close_entry(run.attempt_id, "completed", r.started_at, r.finished_at)
                return
            run.output = output
        self._execution_failed(name, sr, error, r.started_at, r.finished_at)

    def _execution_failed(
        self, name: str, sr: StepRun, error: ErrorInfo, started: float | None, finished: float
    ) -> None:
        run = sr.execution
        if self.inst.winding_down:
            # Rolling back already: an in-flight attempt that fails now is not retried.
            run.error, run.status, run.wake_at = error.to_dict(), RunStatus.FAILED, None
            self._close_entry(run.attempt_id, "failed", started, finished, error)
            return
        policy = self.defn.steps[name].effective_policy()
        if self._after_failure(
            run, error, policy, policy.should_retry(error, run.attempt), started, finished
        ):
            self._begin_rollback({**error.to_dict(), "step": name, "attempt": run.attempt})

    def _after_failure(
        self,
        run: Run,
        error: ErrorInfo,
        policy: RetryPolicy,
        may_retry: bool,
        started: float | None,
        finished: float,
    ) -> bool:
        """Park the run behind an open breaker, schedule its retry, or give up; True if it gave up."""
        run.error = error.to_dict()
        if error.category is ErrorCategory.CIRCUIT_OPEN:
            # Not the step's fault: wait for the breaker without spending an attempt.
            run.attempt -= 1
            # Never park for no time: an open-breaker error without a delay would spin.
            delay = error.retry_after if error.retry_after else policy.initial_seconds
            run.status, run.parked, run.wake_at = RunStatus.WAITING, True, self.now + delay
            self._close_entry(run.attempt_id, "parked", started, finished, error, run.wake_at)
            return False
        if may_retry:
            delay = compute_backoff(policy, run.attempt, self.rng, error.retry_after)
            run.status, run.parked, run.wake_at = RunStatus.WAITING, False, self.now + delay
            self._close_entry(run.attempt_id, "failed", started, finished, error, run.wake_at)
            return False
        run.status, run.wake_at = RunStatus.FAILED, None
        self._close_entry(run.attempt_id, "failed", started, finished, error)
        return True

    def _on_compensation_result(self, name: str, sr: StepRun, r: Result) -> None:
        run = sr.compensation
        assert run is not None
        if r.error is None:
            output = r.output or {}
            flagged = compensation_refusal(output)
            if flagged is not None:
                # The compensation says a person must step in: retrying will not help.
                message = output.get("error") or flagged
                error = ErrorInfo(
                    ErrorCategory.PERMANENT,
                    f"compensation of step {name!r} needs manual intervention: {message}",
                    "CompensationFailed",
                )
                run.status, run.output, run.wake_at = RunStatus.FAILED, output, None
                run.error = error.to_dict()
                self._close_entry(run.attempt_id, "failed", r.started_at, r.finished_at, error)
                return
            run.status, run.output, run.wake_at, run.error = RunStatus.DONE, output, None, None
            self._close_entry(run.attempt_id, "compensated", r.started_at, r.finished_at)
            return
        self._compensation_failed(name, r.error, r.started_at, r.finished_at)

    def _compensation_failed(
        self, name: str, error: ErrorInfo, started: float | None, finished: float
    ) -> None:
        run = self.inst.steps[name].compensation
        assert run is not None
        policy = self.defn.steps[name].effective_policy(kind_compensate=True)
        # Compensations retry unexpected errors too: giving up means a person has to clean up.
        may_retry = error.category is not ErrorCategory.VALIDATION and (
            policy.should_retry(error, run.attempt)
            or (error.category is ErrorCategory.UNEXPECTED and run.attempt < policy.max_attempts)
        )
        self._after_failure(run, error, policy, may_retry, started, finished)

    def _on_tick(self) -> None:
        # Expired leases first: one that ends the saga must keep a retry due in the same tick from
        # starting a new attempt, whatever the order of the steps.
        for name, sr in sorted(self.inst.steps.items(), key=lambda item: not self._lease_expired(item[1])):
            for kind, run in ((Kind.EXECUTE, sr.execution), (Kind.COMPENSATE, sr.compensation)):
                if run is None or run.wake_at is None or run.wake_at > self.now:
                    continue
                if run.status is RunStatus.RUNNING:
                    self.changed = True
                    step = self.defn.steps[name]
                    timeout = step.effective_timeout(kind is Kind.COMPENSATE)
                    error = ErrorInfo(
                        ErrorCategory.TIMEOUT,
                        f"no result for step {name!r} ({kind.value}) within its timeout of "
                        f"{timeout:g}s: the worker is slow, gone, or the message was lost",
                        "StepTimeoutError",
                        retryable=True,
                        types=("multiagents.errors.StepTimeoutError", "TimeoutError"),
                    )
                    if kind is Kind.EXECUTE:
                        self._execution_failed(name, sr, error, None, self.now)
                    else:
                        self._compensation_failed(name, error, None, self.now)
                elif run.status is RunStatus.WAITING:
                    self.changed = True
                    if kind is Kind.EXECUTE and self.inst.winding_down:
                        run.status, run.wake_at = RunStatus.ABANDONED, None
                    elif kind is Kind.EXECUTE:
                        self._dispatch(name, Kind.EXECUTE)
                    else:
                        self._dispatch(name, Kind.COMPENSATE)

    def _lease_expired(self, sr: StepRun) -> bool:
        return any(
            run is not None
            and run.status is RunStatus.RUNNING
            and run.wake_at is not None
            and run.wake_at <= self.now
            for run in (sr.execution, sr.compensation)
        )

    def _on_cancel(self, event: Cancel) -> None:
        if self.inst.cancel_requested:
            return
        self.changed = True
        if self.inst.winding_down:
            # Already rolling back after a failure: the outcome is that failure's, the cancel changes nothing.
            why = f"{event.reason}; the workflow was already compensating, so it ends as that failure decides"
            self.inst.history.append(note(None, "workflow", "cancel_ignored", self.now, reason=why))
            return
        self.inst.cancel_requested = True
        self.inst.history.append(note(None, "workflow", "cancel_requested", self.now, reason=event.reason))
        self._begin_rollback({"category": "cancelled", "message": event.reason, "step": None})

    def _on_retry_compensations(self) -> None:
        if self.inst.state is not SagaState.COMPENSATION_FAILED:
            return
        self.changed = True
        for sr in self.inst.steps.values():
            comp = sr.compensation
            if comp is not None and comp.status is RunStatus.FAILED:
                comp.status, comp.attempt, comp.wake_at, comp.parked = (
                    RunStatus.PENDING,
                    0,
                    None,
                    False,
                )
        self.inst.state = SagaState.COMPENSATING
        self.inst.history.append(note(None, "workflow", "compensation_retry_requested", self.now))

    def _on_resume(self) -> None:
        """Attempts in flight died with the process: each counts as a failed attempt, tried again at once.

        Counting it (as Temporal counts an activity lost with its worker) is what stops a step that kills
        the process from crash-looping forever: its retry policy runs out like any other.
        """
        for name, sr in self.inst.steps.items():
            for kind, run in ((Kind.EXECUTE, sr.execution), (Kind.COMPENSATE, sr.compensation)):
                if run is None or run.status is not RunStatus.RUNNING:
                    continue
                self.changed = True
                error = ErrorInfo(
                    ErrorCategory.TIMEOUT,
                    f"the process stopped while attempt {run.attempt} of step {name!r} ({kind.value}) "
                    "was in flight",
                    "ProcessStopped",
                    retryable=True,
                    types=("ProcessStopped",),
                )
                compensating = kind is Kind.COMPENSATE
                policy = self.defn.steps[name].effective_policy(compensating)
                again = policy.should_retry(error, run.attempt) and (
                    compensating or not self.inst.winding_down
                )
                if again:
                    self._close_entry(run.attempt_id, "interrupted", None, self.now, error)
                    self._dispatch(name, kind)
                elif compensating:
                    self._compensation_failed(name, error, None, self.now)
                else:
                    self._execution_failed(name, sr, error, None, self.now)

    # ---- moving forward -----------------------------------------------------------------------

    def advance(self) -> None:
        inst = self.inst
        if inst.is_terminal:
            return
        if not inst.winding_down:
            frontier = self._frontier()
            if frontier is None:
                return self._finish(SagaState.COMPLETED)
            for name in frontier:
                self._dispatch(name, Kind.EXECUTE)
            if inst.state is SagaState.PENDING:
                inst.state = SagaState.RUNNING
            if not inst.winding_down:
                return
        self._roll_back()

    def _frontier(self) -> list[str] | None:
        """Steps to dispatch now ([] while waiting), or None when every step is done."""
        steps = self.inst.steps
        for node in self.defn.nodes:
            if isinstance(node, Step):
                path: tuple[Step, ...] = (node,)
            elif isinstance(node, Parallel):
                runs = [steps[b.name].execution for b in node.branches]
                if all(r.status is RunStatus.DONE for r in runs):
                    continue
                return [
                    b.name for b, r in zip(node.branches, runs, strict=True) if r.status is RunStatus.PENDING
                ]
            else:
                chosen = self._decide_branch(node)
                if chosen is None:
                    return []
                path = chosen
            for step in path:
                status = steps[step.name].execution.status
                if status in (RunStatus.DONE, RunStatus.SKIPPED):
                    continue
                return [step.name] if status is RunStatus.PENDING else []
        return None

    def _decide_branch(self, node: Conditional) -> tuple[Step, ...] | None:
        taken = self.inst.decisions.get(node.name)
        if taken is None:
            try:
                taken = node.evaluate(loads(dumps(self._context())))  # a copy it may not change
            except Exception as exc:
                error = ErrorInfo(
                    ErrorCategory.PERMANENT,
                    f"condition of {node.name!r} raised {type(exc).__name__}: {exc}",
                    type(exc).__name__,
                )
                self._record({"step": node.name, "kind": "condition"}, error, self.now)
                self._begin_rollback({**error.to_dict(), "step": node.name})
                return None
            self.inst.decisions[node.name] = taken
            skipped = node.false_path if taken else node.true_path
            for step in skipped:
                self.inst.steps[step.name].execution.status = RunStatus.SKIPPED
                reason = f"{node.name} took the {'true' if taken else 'false'} path"
                self.inst.history.append(
                    note(step.name, Kind.EXECUTE.value, "skipped", self.now, attempt=0, reason=reason)
                )
        return node.true_path if taken else node.false_path

    def _begin_rollback(self, cause: dict[str, Any]) -> None:
        inst = self.inst
        inst.state = SagaState.COMPENSATING
        if inst.error is None:
            inst.error = cause
        for sr in inst.steps.values():
            if sr.execution.status is RunStatus.WAITING:
                sr.execution.status, sr.execution.wake_at = RunStatus.ABANDONED, None

    def _roll_back(self) -> None:
        inst = self.inst
        if any(sr.execution.status is RunStatus.RUNNING for sr in inst.steps.values()):
            return  # an attempt in flight may still complete, and then it must be undone too
        if inst.compensation_queue is None:
            inst.compensation_context = self._context()
            inst.compensation_queue = [
                n for n in reversed(inst.completion_order) if self.defn.steps[n].compensation_name
            ]
            for n in inst.compensation_queue:
                inst.steps[n].compensation = Run()
        for name in inst.compensation_queue:
            comp = inst.steps[name].compensation
            assert comp is not None
            if comp.status in (RunStatus.DONE, RunStatus.FAILED):
                continue
            if comp.status is RunStatus.PENDING:
                self._dispatch(name, Kind.COMPENSATE)
            return  # one at a time, in order
        comps = [inst.steps[n].compensation for n in inst.compensation_queue]
        if any(c is not None and c.status is RunStatus.FAILED for c in comps):
            self._finish(SagaState.COMPENSATION_FAILED)
        elif inst.cancel_requested:
            self._finish(SagaState.CANCELLED)
        elif comps:
            self._finish(SagaState.COMPENSATED)
        else:
            self._finish(SagaState.FAILED)

    def _finish(self, state: SagaState) -> None:
        self.inst.state = state
        self.effects.append(Finish(state))

    # ---- dispatching ----------------------------------------------------------------------------

    def _context(self) -> dict[str, Any]:
        """The workflow input merged with every completed step's output, in definition order."""
        ctx = dict(self.inst.input)
        steps = self.inst.steps
        for name in self.defn.order:
            run = steps[name].execution
            if run.status is RunStatus.DONE and run.output:
                ctx.update(run.output)
        return ctx

    def _dispatch(self, name: str, kind: Kind) -> None:
        sr = self.inst.steps[name]
        run = sr.execution if kind is Kind.EXECUTE else sr.compensation
        assert run is not None
        run.attempt += 1
        run.dispatches += 1
        run.parked = False
        run.attempt_id = f"{self.inst.transaction_id}:{name}:{kind.value}:{run.dispatches}"
        step = self.defn.steps[name]
        worker = step.worker_name if kind is Kind.EXECUTE else step.compensation_name
        self.inst.history.append(
            attempt_entry(name, kind.value, run.attempt, run.attempt_id, worker, self.now)
        )
        self._emit(name, kind, run.attempt, run.attempt_id)

    def _emit(self, name: str, kind: Kind, attempt: int, attempt_id: str) -> None:
        sr = self.inst.steps[name]
        run = sr.execution if kind is Kind.EXECUTE else sr.compensation
        assert run is not None
        step = self.defn.steps[name]
        compensating = kind is Kind.COMPENSATE
        timeout = step.effective_timeout(compensating)
        deadline = self.now + timeout
        run.status, run.wake_at = RunStatus.RUNNING, deadline + lease_grace(timeout)
        if compensating:
            context = {**(self.inst.compensation_context or {}), **(sr.execution.output or {})}
            worker = step.compensation_name or ""
            idempotency_key = f"{self.inst.transaction_id}:{name}:compensate"
        else:
            context = self._context()
            worker = step.worker_name
            idempotency_key = f"{self.inst.transaction_id}:{name}"
        self.effects.append(
            Dispatch(
                Command(
                    transaction_id=self.inst.transaction_id,
                    workflow_id=self.inst.workflow_id,
                    step=name,
                    worker=worker,
                    kind=kind,
                    attempt=attempt,
                    attempt_id=attempt_id,
                    idempotency_key=idempotency_key,
                    context=context,
                    deadline=deadline,
                    timeout=timeout,
                    cause=self.inst.error if compensating and not self.inst.cancel_requested else None,
                    circuit_breaker=step.breaker_name(compensating),
                )
            )
        )

    def _close_entry(
        self,
        attempt_id: str | None,
        status: str,
        started: float | None,
        finished: float,
        error: ErrorInfo | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record how an attempt ended; a failure also goes to the error tracker."""
        entry = close_entry(self.inst.history, attempt_id, status, started, finished, error, next_attempt_at)
        if entry is not None and error is not None:
            self._record(entry, error, finished)

    def _record(self, entry: dict[str, Any], error: ErrorInfo, at: float) -> None:
        self.effects.append(
            RecordError(
                error_record(
                    transaction_id=self.inst.transaction_id,
                    workflow_id=self.inst.workflow_id,
                    step=entry.get("step"),
                    worker=entry.get("worker"),
                    kind=entry.get("kind", Kind.EXECUTE.value),
                    attempt=entry.get("attempt") or 0,
                    attempt_id=entry.get("attempt_id"),
                    error=error,
                    context=self.result_context,
                    at=at,
                )
            )
        )
