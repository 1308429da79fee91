"""Properties of the pure saga core, driven by hypothesis through random deliveries, losses and crashes.

The test keeps a small simulated world around ``decide``: the instance as the store would hold it, the
commands sent but not answered, and a clock. Hypothesis picks what happens next (a result, a failure of
any category, a duplicate, a late result, a lost command, time passing, a crash and resume, a cancel, a
retry of failed compensations); after every transition the machine's promises are checked, and at the
end every workflow must reach a terminal state once the world behaves.
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from multiagents.errors import (
    CircuitBreakerOpenError,
    ErrorInfo,
    RetryableError,
    SerializationError,
    StepTimeoutError,
    WorkerExecutionError,
    classify,
)
from multiagents.machine import (
    Cancel,
    Dispatch,
    Effect,
    Event,
    Finish,
    Resume,
    RetryCompensations,
    Start,
    Tick,
    decide,
    new_instance,
)
from multiagents.messages import Command, Kind, Result
from multiagents.policy import RetryPolicy
from multiagents.state import RunStatus, SagaState, WorkflowInstance
from multiagents.workflow import Step, WorkflowBuilder, WorkflowDefinition

TID = "tx-1"
DRAIN_LIMIT = 500

EXECUTION_OUTPUTS: list[dict[str, Any]] = [
    {},
    {"n": 1},
    {"payment": {"approved": True}},
    {"payment": {"approved": False}},
    {"status": "rejected"},  # matches fail_if where a step declares it
    {"status": 3},  # makes that fail_if raise
]
COMPENSATION_OUTPUTS: list[dict[str, Any]] = [{}, {"released": True}]
COMPENSATION_REFUSALS: list[dict[str, Any]] = [
    {"compensation_status": "failed", "error": "refund API refused"},
    {"requires_manual_intervention": True},
]


def failure(exc: BaseException) -> ErrorInfo:
    """The record a worker would send for ``exc``."""
    return classify(exc, with_traceback=False)


# Failures the policy may retry or park (with and without a server-given delay), and failures that are
# final at once. Real exceptions, so the categories are whatever ``classify`` makes of them.
RETRYABLE_FAILURES = st.sampled_from(
    [
        ConnectionError("connection reset"),
        RetryableError("rate limited", retry_after=3.0),
        RetryableError("come back later", retry_after=120.0),
        StepTimeoutError("took longer than its timeout"),
        CircuitBreakerOpenError("breaker open", breaker="svc", retry_after=30.0),
        CircuitBreakerOpenError("breaker half-open now", breaker="svc", retry_after=0.0),
    ]
)
FINAL_FAILURES = st.sampled_from(
    [
        ValueError("quantity must be positive"),
        WorkerExecutionError("card declined"),
        RuntimeError("bug in the worker"),
        SerializationError("output.when is a datetime, which is not JSON-serialisable"),
    ]
)
DELAYS = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 11.0, 30.0, 120.0, 400.0]),
    st.floats(min_value=0.0, max_value=500.0, allow_nan=False, allow_infinity=False),
)
SHAPES = ("sequential", "no_compensation", "parallel", "conditional", "guarded")


def _rejected(output: dict[str, Any]) -> bool:
    """A business check that, like user code, can itself raise (on a status that is not a string)."""
    status: str = output.get("status", "")
    return status.lower() == "rejected"


def _approved(context: dict[str, Any]) -> bool:
    """A callable condition that raises when the context lacks what it needs."""
    return bool(context["payment"]["approved"])


def build_definition(shape: str, attempts: int, comp_attempts: int, jitter: float) -> WorkflowDefinition:
    """A small workflow of the given shape whose every wait is short, so runs end in few steps."""
    retry = RetryPolicy(max_attempts=attempts, initial_interval=1, max_interval=30, jitter=jitter)
    comp_retry = RetryPolicy(max_attempts=comp_attempts, initial_interval=1, max_interval=10, jitter=0)

    def step(name: str, undo: bool = True, **extra: Any) -> Step:
        return Step(
            name,
            f"do_{name}",
            f"undo_{name}" if undo else None,
            timeout=10,
            retry_policy=retry,
            compensation_timeout=5,
            compensation_retry_policy=comp_retry,
            **extra,
        )

    b = WorkflowBuilder(f"wf_{shape}")

    def add(s: Step) -> None:
        b.add_step(
            s.name,
            s.worker,
            s.compensation,
            timeout=s.timeout,
            retry_policy=s.retry_policy,
            fail_if=s.fail_if,
            compensation_timeout=s.compensation_timeout,
            compensation_retry_policy=s.compensation_retry_policy,
        )

    if shape == "sequential":
        add(step("a"))
        add(step("b", undo=False, fail_if=_rejected))
        add(step("c"))
        add(step("d"))
    elif shape == "no_compensation":
        add(step("a", undo=False))
        add(step("b", undo=False))
    elif shape == "parallel":
        add(step("a"))
        b.add_parallel("p", [step("x", fail_if=_rejected), step("y", undo=False), step("z")])
        add(step("e"))
    elif shape == "guarded":
        add(step("a"))
        add(step("b"))
        b.add_conditional(_approved, true_path=step("t1"), false_path=[], name="approved")
    else:
        add(step("a"))
        b.add_conditional(
            "payment.approved",
            true_path=[step("t1"), step("t2", undo=False)],
            false_path=step("f1"),
            name="approved",
        )
        add(step("e"))
    return b.build()


def snapshot(inst: WorkflowInstance) -> dict[str, Any]:
    """A deep, JSON-only copy: also proves the instance is storable as JSON."""
    result: dict[str, Any] = json.loads(json.dumps(inst.to_dict(), allow_nan=False))
    return result


def _without_bookkeeping(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("history", "version", "updated_at")}


class SagaWorld(RuleBasedStateMachine):
    """The instance, the commands in flight, and a clock; hypothesis decides what the world does next."""

    def __init__(self) -> None:
        super().__init__()
        self.defn: WorkflowDefinition | None = None
        self.inst: WorkflowInstance | None = None
        self.rng = random.Random(0)
        self.now = 1000.0
        self.outstanding: dict[str, Command] = {}  # attempt id -> command sent, not answered
        self.dispatched: dict[str, Command] = {}  # every attempt id ever dispatched
        self.answered: list[Result] = []
        self.done_steps: set[str] = set()
        self.rollback_order: list[str] = []  # compensation dispatches of the current rollback
        self.transitions = 0

    # ---- driving the machine ------------------------------------------------------------------

    @initialize(
        shape=st.sampled_from(SHAPES),
        attempts=st.integers(1, 3),
        comp_attempts=st.integers(1, 2),
        jitter=st.sampled_from([0.0, 0.5]),
        seed=st.integers(0, 2**16),
    )
    def start(self, shape: str, attempts: int, comp_attempts: int, jitter: float, seed: int) -> None:
        self.defn = build_definition(shape, attempts, comp_attempts, jitter)
        self.rng = random.Random(seed)
        self.inst = new_instance(self.defn, TID, {"order_id": 7}, self.now)
        self.decide(Start())
        assert self.inst.state is SagaState.RUNNING

    def decide(self, event: Event) -> list[Effect]:
        """Run one transition and check everything a single transition promises."""
        old, defn = self.inst, self.defn
        assert old is not None and defn is not None
        before = snapshot(old)
        new, effects = decide(old, event, defn, self.now, self.rng)
        self.transitions += 1
        assert snapshot(old) == before, "decide mutated its input instance"

        if new is old:
            assert effects == [], "an unchanged instance came back with effects"
            return effects
        assert new.version == old.version + 1, (old.version, new.version)
        assert new.updated_at == self.now

        if isinstance(event, Result) and not self._is_current(old, event):
            # A late or duplicate result: recorded, and nothing else moves.
            moves = [e for e in effects if isinstance(e, Dispatch | Finish)]
            assert moves == [], f"a stale result caused {moves}"
            assert _without_bookkeeping(snapshot(new)) == _without_bookkeeping(before)
            assert len(new.history) == len(old.history) + 1
            assert new.history[-1]["status"] == "ignored"
            assert new.history[-1]["attempt_id"] == event.attempt_id
        if old.is_terminal:
            assert isinstance(event, RetryCompensations | Result), event
        if isinstance(event, RetryCompensations):
            self.rollback_order = []

        self._check_completions(old, new)
        self._check_effects(event, old, new, effects)
        self.inst = new
        return effects

    @staticmethod
    def _is_current(inst: WorkflowInstance, r: Result) -> bool:
        sr = inst.steps.get(r.step)
        if sr is None:
            return False
        run = sr.execution if r.kind is Kind.EXECUTE else sr.compensation
        return run is not None and run.status is RunStatus.RUNNING and run.attempt_id == r.attempt_id

    def _check_completions(self, old: WorkflowInstance, new: WorkflowInstance) -> None:
        for name, sr in new.steps.items():
            was = old.steps[name].execution.status
            if was is RunStatus.DONE:
                assert sr.execution.status is RunStatus.DONE, f"{name} left DONE for {sr.execution.status}"
            elif sr.execution.status is RunStatus.DONE:
                assert name not in self.done_steps, f"step {name} completed twice"
                self.done_steps.add(name)
        assert new.completion_order[: len(old.completion_order)] == old.completion_order

    def _check_effects(
        self, event: Event, old: WorkflowInstance, new: WorkflowInstance, effects: list[Effect]
    ) -> None:
        assert self.defn is not None
        finishes = [e for e in effects if isinstance(e, Finish)]
        if new.is_terminal and not old.is_terminal:
            assert finishes == [Finish(new.state)], effects
        else:
            assert finishes == [], effects
        for effect in effects:
            if not isinstance(effect, Dispatch):
                continue
            cmd = effect.command
            sr = new.steps[cmd.step]
            run = sr.execution if cmd.kind is Kind.EXECUTE else sr.compensation
            assert run is not None and run.status is RunStatus.RUNNING and run.attempt_id == cmd.attempt_id
            # Attempt ids are never reused: after a restart the lost attempt counts and the next one has
            # a new id, while the idempotency key of the step (or of its compensation) stays the same.
            assert cmd.attempt_id not in self.dispatched, f"attempt id {cmd.attempt_id} reused"
            earlier = [c for c in self.dispatched.values() if (c.step, c.kind) == (cmd.step, cmd.kind)]
            assert all(c.idempotency_key == cmd.idempotency_key for c in earlier), "idempotency key changed"
            if cmd.kind is Kind.COMPENSATE:
                self._check_compensation_dispatch(cmd.step, new)
            else:
                assert not new.winding_down, f"execution of {cmd.step} started while rolling back"
            self.dispatched[cmd.attempt_id] = cmd
            self.outstanding[cmd.attempt_id] = cmd

    def _check_compensation_dispatch(self, name: str, new: WorkflowInstance) -> None:
        assert self.defn is not None
        assert self.defn.steps[name].compensation_name, f"{name} has no compensation but one was sent"
        assert new.steps[name].execution.status is RunStatus.DONE, f"{name} never completed"
        assert name in new.completion_order
        running = [n for n, s in new.steps.items() if s.execution.status is RunStatus.RUNNING]
        assert not running, f"compensation of {name} sent while {running} still run"
        busy = [
            n
            for n, s in new.steps.items()
            if s.compensation is not None and s.compensation.status in (RunStatus.RUNNING, RunStatus.WAITING)
        ]
        assert busy == [name], f"compensations not one at a time: {busy}"
        undo_order = [n for n in reversed(new.completion_order) if self.defn.steps[n].compensation_name]
        position = undo_order.index(name)
        if self.rollback_order:
            last = undo_order.index(self.rollback_order[-1])
            assert position >= last, f"compensation order {[*self.rollback_order, name]} vs {undo_order}"
        self.rollback_order.append(name)

    def answer(self, cmd: Command, output: dict[str, Any] | None, error: ErrorInfo | None) -> None:
        self.outstanding.pop(cmd.attempt_id, None)
        result = Result(TID, cmd.step, cmd.kind, cmd.attempt_id, output, error, self.now, self.now)
        self.answered.append(result)
        self.decide(result)

    def pick(self, commands: list[Command], index: int) -> Command:
        return commands[index % len(commands)]

    def current_ids(self) -> set[str]:
        assert self.inst is not None
        ids = set()
        for sr in self.inst.steps.values():
            for run in (sr.execution, sr.compensation):
                if run is not None and run.status is RunStatus.RUNNING and run.attempt_id:
                    ids.add(run.attempt_id)
        return ids

    # ---- what the world does ------------------------------------------------------------------

    @precondition(lambda self: self.outstanding)
    @rule(index=st.integers(0, 100), choice=st.integers(0, 100))
    def deliver_success(self, index: int, choice: int) -> None:
        cmd = self.pick(list(self.outstanding.values()), index)
        outputs = EXECUTION_OUTPUTS if cmd.kind is Kind.EXECUTE else COMPENSATION_OUTPUTS
        self.answer(cmd, dict(outputs[choice % len(outputs)]), None)

    @precondition(lambda self: self.outstanding)
    @rule(choice=st.integers(0, 100))
    def deliver_all_successes(self, choice: int) -> None:
        for cmd in list(self.outstanding.values()):
            outputs = EXECUTION_OUTPUTS if cmd.kind is Kind.EXECUTE else COMPENSATION_OUTPUTS
            self.answer(cmd, dict(outputs[choice % len(outputs)]), None)
            self.check_state()

    @precondition(lambda self: self.outstanding)
    @rule(index=st.integers(0, 100), exc=RETRYABLE_FAILURES)
    def deliver_retryable_failure(self, index: int, exc: BaseException) -> None:
        cmd = self.pick(list(self.outstanding.values()), index)
        self.answer(cmd, None, failure(exc))

    @precondition(lambda self: self.outstanding)
    @rule(index=st.integers(0, 100), exc=FINAL_FAILURES)
    def deliver_final_failure(self, index: int, exc: BaseException) -> None:
        cmd = self.pick(list(self.outstanding.values()), index)
        self.answer(cmd, None, failure(exc))

    @precondition(lambda self: any(c.kind is Kind.COMPENSATE for c in self.outstanding.values()))
    @rule(index=st.integers(0, 100), choice=st.integers(0, 1))
    def compensation_reports_failure(self, index: int, choice: int) -> None:
        cmds = [c for c in self.outstanding.values() if c.kind is Kind.COMPENSATE]
        self.answer(self.pick(cmds, index), dict(COMPENSATION_REFUSALS[choice]), None)

    @precondition(lambda self: self.answered)
    @rule(index=st.integers(0, 100))
    def deliver_duplicate(self, index: int) -> None:
        self.decide(self.answered[index % len(self.answered)])

    @precondition(lambda self: set(self.dispatched) - self.current_ids())
    @rule(index=st.integers(0, 100), ok=st.booleans())
    def deliver_late(self, index: int, ok: bool) -> None:
        current = self.current_ids()
        stale = [c for aid, c in self.dispatched.items() if aid not in current]
        cmd = self.pick(stale, index)
        output = {"late": True} if ok else None
        error = None if ok else failure(ConnectionError("reset after the lease ran out"))
        self.decide(Result(TID, cmd.step, cmd.kind, cmd.attempt_id, output, error, self.now, self.now))

    @precondition(lambda self: self.outstanding)
    @rule(index=st.integers(0, 100))
    def drop_command(self, index: int) -> None:
        cmd = self.pick(list(self.outstanding.values()), index)
        del self.outstanding[cmd.attempt_id]

    @rule(delay=DELAYS)
    def advance_time(self, delay: float) -> None:
        self.now += delay
        self.decide(Tick())

    @rule()
    def crash_and_resume(self) -> None:
        assert self.inst is not None
        stored = snapshot(self.inst)
        self.inst = WorkflowInstance.from_dict(stored)
        assert snapshot(self.inst) == stored, "to_dict/from_dict lost something"
        self.outstanding.clear()
        self.decide(Resume())

    @rule(roll=st.integers(0, 4))
    def cancel(self, roll: int) -> None:
        # Only one draw in five cancels: a cancel ends most runs, and the other paths need room too.
        if roll == 4:
            self.decide(Cancel())

    @precondition(lambda self: self.inst is not None and self.inst.state is SagaState.COMPENSATION_FAILED)
    @rule()
    def retry_compensations(self) -> None:
        self.decide(RetryCompensations())
        assert self.inst is not None and self.inst.state is SagaState.COMPENSATING

    @precondition(lambda self: self.transitions >= 20 and self.inst is not None and not self.inst.is_terminal)
    @rule()
    def world_heals(self) -> None:
        """Mid-run, let everything succeed until the end, then keep perturbing the finished instance."""
        self.drain()

    def drain(self) -> None:
        """Answer every command with success and let time pass until the workflow is terminal."""
        for _ in range(DRAIN_LIMIT):
            assert self.inst is not None
            if self.inst.is_terminal:
                return
            if self.outstanding:
                for cmd in list(self.outstanding.values()):
                    if cmd.attempt_id in self.outstanding:
                        self.answer(cmd, {f"{cmd.step}_ok": True}, None)
                        self.check_state()
            else:
                wake_at = self.inst.wake_at
                assert wake_at is not None, "a live instance with nothing to wait for"
                self.now = max(self.now, wake_at)
                self.decide(Tick())
                self.check_state()
        raise AssertionError(f"not terminal after {DRAIN_LIMIT} drain rounds: {self.inst.state}")

    def teardown(self) -> None:
        # When the example already failed, report that failure rather than one from draining.
        if self.inst is not None and sys.exc_info()[0] is None:
            self.drain()
            assert self.inst.is_terminal
            event(f"{self.defn.id if self.defn else '?'} ended {self.inst.state.value}")

    # ---- what must always hold ----------------------------------------------------------------

    @invariant()
    def check_state(self) -> None:
        inst, defn = self.inst, self.defn
        if inst is None or defn is None:
            return
        assert inst.is_terminal or inst.wake_at is not None, f"stuck in {inst.state} with no timer"
        assert len(set(inst.completion_order)) == len(inst.completion_order), inst.completion_order
        for name in inst.completion_order:
            assert inst.steps[name].execution.status is RunStatus.DONE
        for name, sr in inst.steps.items():
            step = defn.steps[name]
            assert sr.execution.attempt <= step.effective_policy().max_attempts
            if sr.compensation is not None:
                assert step.compensation_name and sr.execution.status is RunStatus.DONE
                assert sr.compensation.attempt <= step.effective_policy(True).max_attempts
            for run in (sr.execution, sr.compensation):
                if run is not None and run.status in (RunStatus.RUNNING, RunStatus.WAITING):
                    assert run.wake_at is not None, f"{name} {run.status} without a timer"
        comps = {n: sr.compensation for n, sr in inst.steps.items() if sr.compensation is not None}
        busy = [n for n, c in comps.items() if c.status in (RunStatus.RUNNING, RunStatus.WAITING)]
        executing = [n for n, sr in inst.steps.items() if sr.execution.status is RunStatus.RUNNING]
        assert len(busy) <= 1, f"several compensations at once: {busy}"
        assert not (busy and executing), f"compensating {busy} while {executing} still run"
        if inst.state in (SagaState.RUNNING, SagaState.COMPLETED):
            assert not comps, "a compensation exists outside a rollback"
        if inst.is_terminal:
            assert not executing and not busy
        statuses = [c.status for c in comps.values()]
        if inst.state is SagaState.COMPLETED:
            ended = {sr.execution.status for sr in inst.steps.values()}
            assert ended <= {RunStatus.DONE, RunStatus.SKIPPED}, ended
        elif inst.state is SagaState.FAILED:
            assert not comps and not self.rollback_order, "failed, yet a compensation ran"
            assert not inst.cancel_requested
        elif inst.state is SagaState.COMPENSATED:
            assert RunStatus.DONE in statuses and set(statuses) == {RunStatus.DONE}, statuses
        elif inst.state is SagaState.COMPENSATION_FAILED:
            assert RunStatus.FAILED in statuses
            assert set(statuses) <= {RunStatus.DONE, RunStatus.FAILED}, statuses
        elif inst.state is SagaState.CANCELLED:
            assert inst.cancel_requested and set(statuses) <= {RunStatus.DONE}, statuses
        if inst.state in (SagaState.COMPENSATED, SagaState.COMPENSATION_FAILED, SagaState.CANCELLED):
            # Every completed step that can be undone was given its chance.
            undoable = {n for n in inst.completion_order if defn.steps[n].compensation_name}
            assert set(comps) == undoable, (sorted(comps), sorted(undoable))


SagaWorld.TestCase.settings = settings(
    max_examples=int(os.environ.get("MULTIAGENTS_HYPOTHESIS_EXAMPLES", "200")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSagaMachine = SagaWorld.TestCase
TestSagaMachine.__doc__ = "Random deliveries, losses, crashes and cancels never break the saga's promises."
