"""Worked examples for the pure saga core: retries as timers, parking, leases, stale results, resume."""

from __future__ import annotations

import json
import random
from typing import Any

from multiagents.errors import ErrorCategory, ErrorInfo
from multiagents.machine import (
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

TID = "tx-42"
NO_JITTER = RetryPolicy(max_attempts=3, initial_interval=1, jitter=0)


class Saga:
    """One instance driven by hand: feed it events, keep what it decided."""

    def __init__(self, definition: WorkflowDefinition, now: float = 0.0) -> None:
        self.defn = definition
        self.now = now
        self.rng = random.Random(0)
        self.inst = new_instance(definition, TID, {"order_id": 1}, now)
        self.effects: list[Effect] = []

    def send(self, event: Event, at: float | None = None) -> list[Effect]:
        """The dispatches and finishes the event caused (other effects, such as error records, left out)."""
        if at is not None:
            self.now = at
        self.inst, self.effects = decide(self.inst, event, self.defn, self.now, self.rng)
        return [e for e in self.effects if isinstance(e, Dispatch | Finish)]

    def commands(self) -> list[Command]:
        return [e.command for e in self.effects if isinstance(e, Dispatch)]

    def only_command(self) -> Command:
        (cmd,) = self.commands()
        return cmd

    def reply(
        self, cmd: Command, output: dict[str, Any] | None = None, error: ErrorInfo | None = None
    ) -> list[Effect]:
        result = Result(TID, cmd.step, cmd.kind, cmd.attempt_id, output, error, self.now, self.now)
        return self.send(result)

    def finished(self) -> list[SagaState]:
        return [e.state for e in self.effects if isinstance(e, Finish)]


def transient(retry_after: float | None = None) -> ErrorInfo:
    return ErrorInfo(ErrorCategory.TRANSIENT, "connection reset", "ConnectionError", True, retry_after)


def one_step(policy: RetryPolicy = NO_JITTER, **options: Any) -> WorkflowDefinition:
    return WorkflowBuilder("one").add_step("charge", "charge_card", retry_policy=policy, **options).build()


def test_transient_twice_then_success_takes_three_attempts_after_1s_then_2s() -> None:
    """Two transient failures are retried as timers 1 s and then 2 s later, and the third attempt wins."""
    saga = Saga(one_step(), now=100.0)
    saga.send(Start())
    first = saga.only_command()
    assert first.attempt == 1

    assert saga.reply(first, error=transient()) == []
    run = saga.inst.steps["charge"].execution
    assert (run.status, run.wake_at) == (RunStatus.WAITING, 101.0)
    before = saga.inst
    assert saga.send(Tick(), at=100.999) == [] and saga.inst is before  # not due yet: nothing written

    saga.send(Tick(), at=101.0)
    second = saga.only_command()
    assert second.attempt == 2 and second.attempt_id != first.attempt_id
    saga.reply(second, error=transient())
    assert saga.inst.steps["charge"].execution.wake_at == 103.0

    saga.send(Tick(), at=103.0)
    third = saga.only_command()
    assert third.attempt == 3
    saga.reply(third, output={"charged": True})
    assert saga.inst.state is SagaState.COMPLETED and saga.finished() == [SagaState.COMPLETED]
    assert saga.inst.steps["charge"].execution.attempt == 3
    waits = [e["next_attempt_at"] - e["completed_at"] for e in saga.inst.history if "next_attempt_at" in e]
    assert waits == [1.0, 2.0]


def test_retry_after_delays_the_next_attempt_at_least_that_long() -> None:
    """A transient failure carrying retry_after=120 is not retried before 120 s have passed."""
    saga = Saga(one_step(), now=0.0)
    saga.send(Start())
    saga.reply(saga.only_command(), error=transient(retry_after=120.0))
    wake_at = saga.inst.steps["charge"].execution.wake_at
    assert wake_at is not None and wake_at >= 120.0
    assert saga.send(Tick(), at=119.0) == []
    saga.send(Tick(), at=wake_at)
    assert saga.only_command().attempt == 2


def test_circuit_open_parks_the_step_without_spending_an_attempt() -> None:
    """An open breaker parks the step until retry_after and the next try is still attempt 1 of 1."""
    saga = Saga(one_step(RetryPolicy(max_attempts=1, jitter=0)), now=0.0)
    saga.send(Start())
    first = saga.only_command()
    parked = ErrorInfo(ErrorCategory.CIRCUIT_OPEN, "breaker open", "CircuitBreakerOpenError", True, 30.0)
    assert saga.reply(first, error=parked) == []
    sr = saga.inst.steps["charge"]
    assert (sr.execution.status, sr.execution.attempt, sr.execution.wake_at) == (RunStatus.WAITING, 0, 30.0)
    assert sr.label == "parked" and saga.inst.state is SagaState.RUNNING

    saga.send(Tick(), at=30.0)
    again = saga.only_command()
    assert again.attempt == 1 and again.attempt_id != first.attempt_id
    saga.reply(again, output={})
    assert saga.inst.state is SagaState.COMPLETED


def test_validation_error_in_the_first_step_fails_without_compensating() -> None:
    """A validation error in the first step ends the workflow failed and dispatches no compensation."""
    defn = (
        WorkflowBuilder("order")
        .add_step("reserve", "reserve_inventory", "release_inventory", retry_policy=NO_JITTER)
        .add_step("charge", "charge_card", "refund_card", retry_policy=NO_JITTER)
        .build()
    )
    saga = Saga(defn)
    saga.send(Start())
    bad = ErrorInfo(ErrorCategory.VALIDATION, "quantity must be positive", "ValueError")
    effects = saga.reply(saga.only_command(), error=bad)
    assert effects == [Finish(SagaState.FAILED)]
    assert saga.inst.state is SagaState.FAILED
    assert saga.inst.steps["reserve"].execution.attempt == 1  # not retried
    assert all(sr.compensation is None for sr in saga.inst.steps.values())
    assert saga.inst.error is not None and saga.inst.error["category"] == "validation"


def test_a_late_result_is_recorded_as_ignored_and_changes_nothing_else() -> None:
    """The result of an attempt whose lease already ran out lands in history as ignored, and that is all."""
    saga = Saga(one_step(timeout=10), now=0.0)
    saga.send(Start())
    first = saga.only_command()
    saga.send(Tick(), at=11.0)  # lease: 10 s timeout plus 1 s grace
    assert saga.inst.steps["charge"].execution.status is RunStatus.WAITING
    saga.send(Tick(), at=12.0)
    second = saga.only_command()

    before = saga.inst.to_dict()
    effects = saga.reply(first, output={"charged": "twice?"})
    after = saga.inst.to_dict()
    assert effects == []
    assert after["version"] == before["version"] + 1
    assert after["history"][:-1] == before["history"]
    late = after["history"][-1]
    assert (late["status"], late["attempt_id"], late["step"]) == ("ignored", first.attempt_id, "charge")
    skip = ("history", "version", "updated_at")
    assert {k: v for k, v in after.items() if k not in skip} == {
        k: v for k, v in before.items() if k not in skip
    }

    saga.reply(second, output={"charged": True})
    assert saga.inst.state is SagaState.COMPLETED
    assert saga.inst.steps["charge"].execution.output == {"charged": True}


def test_resume_tries_the_in_flight_attempt_again_at_once_as_the_next_attempt() -> None:
    """After a restart the attempt in flight counts as lost and the next one goes at once, same key."""
    saga = Saga(one_step(), now=0.0)
    saga.send(Start())
    sent = saga.only_command()

    saga.inst = WorkflowInstance.from_dict(json.loads(json.dumps(saga.inst.to_dict())))
    saga.send(Resume(), at=5.0)
    again = saga.only_command()
    assert again.attempt == sent.attempt + 1
    assert again.attempt_id != sent.attempt_id
    assert again.idempotency_key == sent.idempotency_key
    lost = [e for e in saga.inst.history if e.get("attempt_id") == sent.attempt_id]
    assert [e["status"] for e in lost] == ["interrupted"]
    assert lost[0]["error"]["type"] == "ProcessStopped"
    saga.reply(again, output={})
    assert saga.inst.state is SagaState.COMPLETED


def test_resume_with_no_attempts_left_fails_the_step() -> None:
    """A step that was in flight at every restart runs out of attempts like any other: no crash loop."""
    saga = Saga(one_step(), now=0.0)
    saga.send(Start())
    for _ in range(5):
        saga.send(Resume(), at=saga.now + 1)
        if saga.inst.is_terminal:
            break
    assert saga.inst.is_terminal
    attempts = [e for e in saga.inst.history if e["kind"] == "execute" and e.get("attempt")]
    assert len(attempts) <= 3


def test_compensations_run_one_at_a_time_in_reverse_completion_order() -> None:
    """When the last step fails for good, the completed steps are undone newest first, one after another."""
    builder = WorkflowBuilder("order")
    for name in ("reserve", "charge", "ship"):
        builder.add_step(name, f"do_{name}", f"undo_{name}", retry_policy=NO_JITTER)
    builder.add_step("notify", "send_mail", retry_policy=RetryPolicy(max_attempts=1))
    saga = Saga(builder.build())
    saga.send(Start())
    for _ in range(3):
        saga.reply(saga.only_command(), output={})
    permanent = ErrorInfo(ErrorCategory.PERMANENT, "mail server refused", "WorkerExecutionError")
    saga.reply(saga.only_command(), error=permanent)

    undone = []
    while saga.commands():
        cmd = saga.only_command()
        assert cmd.kind is Kind.COMPENSATE
        undone.append(cmd.step)
        saga.reply(cmd, output={})
    assert undone == ["ship", "charge", "reserve"]
    assert saga.inst.state is SagaState.COMPENSATED


def test_retry_compensations_after_manual_intervention_finishes_compensated() -> None:
    """A compensation that asked for a person ends compensation_failed; a retry can still finish the job."""
    defn = (
        WorkflowBuilder("order")
        .add_step("charge", "charge_card", "refund_card", retry_policy=NO_JITTER)
        .add_step("ship", "create_shipment", retry_policy=RetryPolicy(max_attempts=1))
        .build()
    )
    saga = Saga(defn)
    saga.send(Start())
    saga.reply(saga.only_command(), output={"charge_id": "ch_1"})
    saga.reply(saga.only_command(), error=ErrorInfo(ErrorCategory.PERMANENT, "no carrier", "StepFailed"))
    refund = saga.only_command()
    assert (refund.step, refund.kind, refund.context["charge_id"]) == ("charge", Kind.COMPENSATE, "ch_1")
    saga.reply(refund, output={"compensation_status": "failed"})
    assert saga.inst.state is SagaState.COMPENSATION_FAILED
    assert saga.finished() == [SagaState.COMPENSATION_FAILED]

    saga.send(RetryCompensations())
    retry = saga.only_command()
    assert retry.attempt_id != refund.attempt_id and retry.attempt == 1
    saga.reply(retry, output={"refunded": True})
    assert saga.inst.state is SagaState.COMPENSATED


def test_a_lease_that_ends_the_saga_stops_a_retry_due_in_the_same_tick() -> None:
    """A branch whose lease ends the saga stops another branch's retry due in the same tick from starting."""
    once = RetryPolicy(max_attempts=1, jitter=0)
    defn = (
        WorkflowBuilder("fanout")
        .add_step("reserve", "reserve_inventory", "release_inventory", retry_policy=once)
        .add_parallel(
            "deliver",
            [
                Step("ship", "create_shipment", timeout=10, retry_policy=once),
                Step("mail", "send_mail", timeout=10, retry_policy=once),
            ],
        )
        .build()
    )
    saga = Saga(defn)
    saga.send(Start())
    saga.reply(saga.only_command(), output={})
    ship, _mail = saga.commands()
    parked = ErrorInfo(ErrorCategory.CIRCUIT_OPEN, "carrier API down", "CircuitBreakerOpenError", True, 0.0)
    saga.reply(ship, error=parked)  # "ship" is due again at once; "mail" never answers

    saga.send(Tick(), at=100.0)
    assert saga.inst.state is SagaState.COMPENSATING
    assert [(c.step, c.kind) for c in saga.commands()] == [("reserve", Kind.COMPENSATE)]
    assert saga.inst.steps["ship"].execution.status is RunStatus.ABANDONED
