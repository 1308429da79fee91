"""Acceptance behaviour of the Runtime on the embedded backends (memory store, fake clock)."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import pytest
from pydantic import BaseModel

from multiagents import (
    DefinitionError,
    FakeClock,
    RetryPolicy,
    SagaState,
    Step,
    StepFailed,
    ValidationError,
    WorkflowBuilder,
    step_info,
    worker,
)
from multiagents.core.exceptions import WorkerExecutionError

NO_JITTER = RetryPolicy(max_attempts=3, initial_interval=1, backoff_coefficient=2, jitter=0)


def attempts(status: dict[str, Any], step: str, kind: str = "execute") -> list[dict[str, Any]]:
    return [
        e
        for e in status["execution_history"]
        if e["step"] == step and e["kind"] == kind and e["status"] not in ("skipped", "ignored")
    ]


async def test_transient_twice_then_success_retries_with_policy_delays(make_runtime, clock: FakeClock):
    """Two ConnectionErrors then success with max_attempts=3: completed, 3 attempts, 1 s then 2 s apart."""
    seen: list[float] = []

    @worker("flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        seen.append(clock.now())
        if len(seen) < 3:
            raise ConnectionError("service unreachable")
        return {"ok": True}

    wf = WorkflowBuilder("w").add_step("call", flaky, retry_policy=NO_JITTER).build()
    async with make_runtime(workflows=[wf]) as rt:
        tid = await rt.execute_workflow("w", {})
        status = await clock.run_until(rt.wait(tid))
    assert status["state"] == SagaState.COMPLETED
    tries = attempts(status, "call")
    assert [t["attempt"] for t in tries] == [1, 2, 3]
    assert [t["status"] for t in tries] == ["failed", "failed", "completed"]
    assert [round(b - a, 6) for a, b in itertools.pairwise(seen)] == [1.0, 2.0]


async def test_validation_error_in_first_step_fails_without_retry_or_compensation(make_runtime, clock):
    """A ValueError in the first step ends the workflow failed: one attempt, no compensation run."""
    calls: list[str] = []

    @worker("validate")
    async def validate(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append("validate")
        raise ValueError("Missing required fields: ['user_id']")

    @worker("undo_validate")
    async def undo(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append("undo")
        return {}

    wf = WorkflowBuilder("w").add_step("v", validate, compensation=undo, retry_policy=NO_JITTER).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.FAILED
    assert calls == ["validate"]
    assert status["error"]["category"] == "validation"
    assert "user_id" in status["error"]["message"]
    assert not [e for e in status["execution_history"] if e["kind"] == "compensate"]


async def test_seed_saga_compensates_in_reverse_order_with_outputs(make_runtime, clock):
    """A failing shipment undoes payment then inventory, once each, each seeing its step's output."""
    log: list[tuple[str, Any]] = []

    @worker("reserve_inventory")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"reservation_id": f"RES-{ctx['order_id']}", "status": "reservation_successful"}

    @worker("release_inventory")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append(("release", ctx.get("reservation_id"), ctx.get("status")))
        info = step_info()
        log.append(("release_info", info.kind, info.compensating, (info.cause or {}).get("step")))
        return {"compensation_status": "success"}

    @worker("charge_payment")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        assert ctx["reservation_id"] == "RES-7"
        return {"payment_id": "PAY-7", "status": "payment_successful"}

    @worker("refund_payment")
    async def refund(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append(("refund", ctx.get("payment_id"), ctx.get("status")))
        return {"compensation_status": "success"}

    @worker("create_shipment")
    async def ship(ctx: dict[str, Any]) -> dict[str, Any]:
        raise WorkerExecutionError("carrier rejected the parcel")

    @worker("cancel_shipment")
    async def cancel_ship(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append(("cancel_shipment", None, None))
        return {}

    wf = (
        WorkflowBuilder("saga_workflow")
        .add_step("step1_reserve_inventory", "reserve_inventory", compensation="release_inventory")
        .add_step("step2_charge_payment", "charge_payment", compensation="refund_payment")
        .add_step("step3_create_shipment", "create_shipment", compensation="cancel_shipment")
        .add_step("step4_send_notification", "send_notification")
        .build()
    )

    @worker("send_notification")
    async def notify(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    workers = [reserve, release, charge, refund, ship, cancel_ship, notify]
    async with make_runtime(workers=workers, workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("saga_workflow", {"order_id": 7}))
    assert status["state"] == SagaState.COMPENSATED
    assert log == [
        ("refund", "PAY-7", "payment_successful"),
        ("release", "RES-7", "reservation_successful"),
        ("release_info", "compensate", "step1_reserve_inventory", "step3_create_shipment"),
    ]
    comps = [e["step"] for e in status["execution_history"] if e["kind"] == "compensate"]
    assert comps == ["step2_charge_payment", "step1_reserve_inventory"]
    assert status["steps"]["step3_create_shipment"]["status"] == "failed"
    assert status["steps"]["step4_send_notification"]["status"] == "pending"


async def test_hanging_step_is_retried_then_compensated(make_runtime, clock):
    """A step that never returns times out on every attempt, then the completed step is undone."""
    undone: list[str] = []

    @worker("book")
    async def book(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"booking": "B1"}

    @worker("unbook")
    async def unbook(ctx: dict[str, Any]) -> dict[str, Any]:
        undone.append(ctx["booking"])
        return {}

    @worker("hang")
    async def hang(ctx: dict[str, Any]) -> dict[str, Any]:
        await clock.sleep(10_000)
        return {}

    wf = (
        WorkflowBuilder("w")
        .add_step("book", book, compensation=unbook)
        .add_step("hang", hang, timeout=5, retry_policy=RetryPolicy(max_attempts=2, jitter=0))
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.COMPENSATED
    assert undone == ["B1"]
    tries = attempts(status, "hang")
    assert len(tries) == 2
    assert all(t["error"]["category"] == "timeout" for t in tries)


async def test_worker_that_never_answers_cannot_keep_workflow_running(make_runtime, clock):
    """Commands that no worker ever answers are caught by the lease: the workflow still ends."""

    @worker("lost")
    async def lost(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder("w").add_step("s", lost, timeout=3, retry_policy=RetryPolicy(max_attempts=2)).build()
    rt = make_runtime(workflows=[wf])
    async with rt:
        await rt._pool.stop()  # the worker process is gone: commands pile up unanswered
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.FAILED
    assert [t["status"] for t in attempts(status, "s")] == ["failed", "failed"]
    assert "no result" in status["error"]["message"]


async def test_failing_compensation_others_still_run_then_retry_fixes(make_runtime, clock):
    """A compensation that keeps failing leaves compensation_failed; the rest run; a retry recovers."""
    broken = {"refund": True}
    ran: list[str] = []

    @worker("a")
    async def a(ctx):
        return {"a": 1}

    @worker("undo_a")
    async def undo_a(ctx):
        ran.append("undo_a")
        return {}

    @worker("b")
    async def b(ctx):
        return {"b": 1}

    @worker("undo_b")
    async def undo_b(ctx):
        ran.append("undo_b")
        if broken["refund"]:
            raise ConnectionError("payment gateway down")
        return {}

    @worker("c")
    async def c(ctx):
        raise StepFailed("card declined")

    comp_policy = RetryPolicy(max_attempts=2, initial_interval=1, jitter=0)
    wf = (
        WorkflowBuilder("w")
        .add_step("a", a, compensation=undo_a)
        .add_step("b", b, compensation=undo_b, compensation_retry_policy=comp_policy)
        .add_step("c", c)
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        tid = await rt.execute_workflow("w", {})
        status = await clock.run_until(rt.wait(tid))
        assert status["state"] == SagaState.COMPENSATION_FAILED
        assert ran == ["undo_b", "undo_b", "undo_a"]
        assert status["compensation_failures"][0]["step"] == "b"
        assert "payment gateway down" in status["compensation_failures"][0]["error"]
        broken["refund"] = False
        await rt.retry_compensations(tid)
        status = await clock.run_until(rt.wait(tid))
    assert status["state"] == SagaState.COMPENSATED
    assert ran == ["undo_b", "undo_b", "undo_a", "undo_b"]


async def test_compensation_reporting_manual_intervention_is_not_retried(make_runtime, clock):
    """A compensation returning requires_manual_intervention fails at once: compensation_failed."""
    count = {"n": 0}

    @worker("a")
    async def a(ctx):
        return {"reservation_id": "R"}

    @worker("undo_a")
    async def undo_a(ctx):
        count["n"] += 1
        return {"compensation_status": "failed", "requires_manual_intervention": True, "error": "db down"}

    @worker("boom")
    async def boom(ctx):
        raise WorkerExecutionError("no")

    wf = WorkflowBuilder("w").add_step("a", a, compensation=undo_a).add_step("boom", boom).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.COMPENSATION_FAILED
    assert count["n"] == 1
    assert "db down" in status["compensation_failures"][0]["error"]


async def test_parallel_branches_run_concurrently_and_merge_in_order(make_runtime, clock):
    """Both branches are in flight at once; outputs merge in declaration order for the next step."""
    started: list[str] = []
    gate = asyncio.Event()

    async def branch(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
        started.append(name)
        if len(started) == 2:
            gate.set()
        await asyncio.wait_for(gate.wait(), 5)  # returns only once the other branch has started too
        return {"who": name, name: True}

    @worker("left")
    async def left(ctx):
        return await branch("left", ctx)

    @worker("right")
    async def right(ctx):
        return await branch("right", ctx)

    seen: dict[str, Any] = {}

    @worker("after")
    async def after(ctx):
        seen.update(ctx)
        return {}

    wf = (
        WorkflowBuilder("w")
        .add_parallel("both", [Step("left", left), {"name": "right", "worker": right}])
        .add_step("after", after)
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        status = await rt.run("w", {}, timeout=10)
    assert status["state"] == SagaState.COMPLETED
    assert sorted(started) == ["left", "right"]
    assert seen["left"] is True and seen["right"] is True
    assert seen["who"] == "right"  # declared last, merged last


async def test_parallel_failure_compensates_the_other_branch(make_runtime, clock):
    """When one branch fails for good, the completed sibling branch is compensated."""
    undone: list[str] = []

    @worker("ok_branch")
    async def ok_branch(ctx):
        return {"hold": "H1"}

    @worker("undo_ok")
    async def undo_ok(ctx):
        undone.append(ctx["hold"])
        return {}

    @worker("bad_branch")
    async def bad_branch(ctx):
        await clock.sleep(1)  # finishes after its sibling
        raise StepFailed("no capacity")

    wf = (
        WorkflowBuilder("w")
        .add_parallel("p", [Step("ok", ok_branch, compensation=undo_ok), Step("bad", bad_branch)])
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.COMPENSATED
    assert undone == ["H1"]


@pytest.mark.parametrize("approved", [True, False])
async def test_conditional_runs_only_the_chosen_path(make_runtime, clock, approved: bool):
    """The path matching the condition runs; the other's steps are recorded as skipped."""
    ran: list[str] = []

    def make(name: str):
        @worker(name)
        async def fn(ctx):
            ran.append(name)
            return {f"{name}_done": True}

        return fn

    pay, ship, notify_decline, _refund_note, finish = map(make, ["pay", "ship", "decline", "note", "finish"])

    @worker("check")
    async def check(ctx):
        return {"payment": {"approved": ctx["approve"]}}

    wf = (
        WorkflowBuilder("w")
        .add_step("check", check)
        .add_conditional(
            "payment.approved", [Step("ship", ship), Step("pay", pay)], Step("decline", notify_decline)
        )
        .add_step("finish", finish)
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {"approve": approved}))
    assert status["state"] == SagaState.COMPLETED
    if approved:
        assert ran == ["ship", "pay", "finish"]
        assert status["steps"]["decline"]["status"] == "skipped"
    else:
        assert ran == ["decline", "finish"]
        assert status["steps"]["ship"]["status"] == "skipped"
        assert status["steps"]["pay"]["status"] == "skipped"


async def test_callers_context_is_never_mutated(make_runtime, clock):
    """The dict given to execute_workflow is unchanged, even when workers mutate theirs."""

    @worker("mutator")
    async def mutator(ctx):
        ctx["items"].append("x")
        ctx["new"] = 1
        return {"items": ctx["items"]}

    wf = WorkflowBuilder("w").add_step("m", mutator).add_step("n", mutator).build()
    given = {"items": ["a"], "nested": {"k": [1]}}
    snapshot = copy.deepcopy(given)
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", given))
    assert given == snapshot
    assert status["context"]["items"] == ["a", "x", "x"]


async def test_fail_if_turns_returned_status_into_business_failure(make_runtime, clock):
    """A step whose fail_if matches its output fails permanently, with the output's error as reason."""

    @worker("reserve")
    async def reserve(ctx):
        return {"status": "insufficient_inventory", "error": "Only 0 units of product_3 available"}

    wf = (
        WorkflowBuilder("w")
        .add_step("reserve", reserve, fail_if=lambda out: out.get("status") == "insufficient_inventory")
        .build()
    )
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.FAILED
    assert status["error"]["category"] == "permanent"
    assert "Only 0 units" in status["error"]["message"]
    assert len(attempts(status, "reserve")) == 1


async def test_nan_output_fails_naming_the_key(make_runtime, clock):
    """A NaN in the output is a serialization failure whose message names the key."""

    @worker("bad")
    async def bad(ctx):
        return {"price": {"total": float("nan")}}

    wf = WorkflowBuilder("w").add_step("bad", bad).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.FAILED
    assert status["error"]["category"] == "serialization"
    assert "price.total" in status["error"]["message"]


async def test_non_serialisable_output_fails_naming_the_key(make_runtime, clock):
    """An object that JSON cannot hold fails the step with the key in the message, not a traceback."""

    @worker("bad")
    async def bad(ctx):
        return {"when": object()}

    wf = WorkflowBuilder("w").add_step("bad", bad).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["error"]["category"] == "serialization"
    assert "when" in status["error"]["message"]


async def test_retry_after_is_the_minimum_delay(make_runtime, clock):
    """An exception with retry_after=120 delays the next attempt by at least 120 s."""
    seen: list[float] = []

    class RateLimitError(Exception):
        def __init__(self, message: str, retry_after: float | None = None) -> None:
            super().__init__(message)
            self.retry_after = retry_after

    @worker("limited")
    async def limited(ctx):
        seen.append(clock.now())
        if len(seen) == 1:
            raise RateLimitError("Rate limit exceeded", retry_after=120)
        return {}

    wf = WorkflowBuilder("w").add_step("s", limited, retry_policy=NO_JITTER).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.COMPLETED
    assert seen[1] - seen[0] >= 120


async def test_input_model_rejects_at_start_listing_every_field(make_runtime, clock):
    """A workflow input model rejects bad input at execute_workflow with every field error; nothing runs."""

    class Order(BaseModel):
        order_id: int
        amount: float
        email: str

    @worker("noop")
    async def noop(ctx):
        return {}

    wf = WorkflowBuilder("w", input_model=Order).add_step("s", noop).build()
    async with make_runtime(workflows=[wf]) as rt:
        with pytest.raises(ValidationError) as err:
            await rt.execute_workflow("w", {"order_id": "x", "amount": "y"})
        assert await rt.list_workflows() == []
    text = str(err.value)
    assert "order_id" in text and "amount" in text and "email" in text
    assert len(err.value.errors) == 3


async def test_cancel_compensates_completed_steps_and_finished_is_a_noop(make_runtime, clock):
    """Cancelling a running workflow undoes its completed steps (cancelled); a finished one is untouched."""
    undone: list[str] = []
    release = asyncio.Event()

    @worker("first")
    async def first(ctx):
        return {"x": 1}

    @worker("undo_first")
    async def undo_first(ctx):
        undone.append("first")
        return {}

    @worker("slow")
    async def slow(ctx):
        await release.wait()
        return {}

    wf = WorkflowBuilder("w").add_step("first", first, compensation=undo_first).add_step("slow", slow).build()
    async with make_runtime(workflows=[wf]) as rt:
        tid = await rt.execute_workflow("w", {})
        for _ in range(50):
            if (await rt.get_status(tid))["steps"]["slow"]["status"] == "running":
                break
            await asyncio.sleep(0)
        result = await rt.cancel_workflow(tid)
        assert "cancelling" in result["message"]
        release.set()
        status = await clock.run_until(rt.wait(tid))
        assert status["state"] == SagaState.CANCELLED
        assert undone == ["first"]
        again = await rt.cancel_workflow(tid)
    assert again["state"] == SagaState.CANCELLED
    assert "nothing to cancel" in again["message"]


async def test_idempotency_key_is_stable_across_retries(make_runtime, clock):
    """Every attempt of one step sees the same idempotency key and a growing attempt number."""
    keys: list[tuple[str, int]] = []

    @worker("s")
    async def s(ctx):
        info = step_info()
        keys.append((info.idempotency_key, info.attempt))
        if info.attempt < 3:
            raise TimeoutError("slow upstream")
        return {}

    wf = WorkflowBuilder("w").add_step("s", s, retry_policy=NO_JITTER).build()
    async with make_runtime(workflows=[wf]) as rt:
        tid = await rt.execute_workflow("w", {})
        await clock.run_until(rt.wait(tid))
    assert [k for k, _ in keys] == [f"{tid}:s"] * 3
    assert [a for _, a in keys] == [1, 2, 3]


async def test_sync_worker_runs_in_a_thread(make_runtime, clock):
    """A plain def worker runs off the event loop and its result flows on."""
    import threading

    main_thread = threading.get_ident()

    @worker("sync_step")
    def sync_step(ctx):
        return {"thread": threading.get_ident()}

    wf = WorkflowBuilder("w").add_step("s", sync_step).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.COMPLETED
    assert status["context"]["thread"] != main_thread


def test_missing_worker_is_named_at_runtime_construction(make_runtime):
    """A workflow naming an unregistered worker fails fast, naming the workflow, step and worker."""
    wf = WorkflowBuilder("w").add_step("s", "ghost").build()
    with pytest.raises(DefinitionError, match="step 's' needs worker 'ghost'"):
        make_runtime(workflows=[wf])


def test_builder_rejects_bad_definitions():
    """Duplicate names, empty workflows and bad references fail at build() with a message naming them."""
    with pytest.raises(DefinitionError, match="has no steps"):
        WorkflowBuilder("w").build()
    with pytest.raises(DefinitionError, match="'a' is used twice"):
        WorkflowBuilder("w").add_step("a", "x").add_step("a", "y").build()
    with pytest.raises(DefinitionError, match="worker name"):
        WorkflowBuilder("w").add_step("a", 42)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="unknown retry_policy keys"):
        WorkflowBuilder("w").add_step("a", "x", retry_policy={"tries": 3})


def test_old_dict_retry_policy_is_accepted():
    """The old package's dict form maps onto RetryPolicy (max_retries counts retries, not attempts)."""
    wf = (
        WorkflowBuilder("w")
        .add_step("a", "x", retry_policy={"max_retries": 2, "backoff_multiplier": 3})
        .build()
    )
    policy = wf.steps["a"].effective_policy()
    assert policy.max_attempts == 3
    assert policy.backoff_coefficient == 3.0


async def test_engine_bug_flags_the_workflow_instead_of_stranding_it(make_runtime, clock, monkeypatch):
    """If deciding on a result raises, the workflow ends compensation_failed with the reason, not hanging."""
    import multiagents.engine as engine_mod
    from multiagents.messages import Result

    real = engine_mod.decide

    def broken(inst, event, *args):
        if isinstance(event, Result):
            raise RuntimeError("simulated defect")
        return real(inst, event, *args)

    monkeypatch.setattr(engine_mod, "decide", broken)

    @worker("one")
    async def one(ctx):
        return {}

    wf = WorkflowBuilder("w").add_step("one", one).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("w", {}))
    assert status["state"] == SagaState.COMPENSATION_FAILED
    assert status["error"]["category"] == "internal"
    assert "simulated defect" in status["error"]["message"]


async def test_wait_during_stop_says_the_workflow_resumes_later(make_runtime, clock):
    """A caller waiting when the runtime stops gets a clear error, not a bare cancellation."""
    from multiagents import MultiAgentsError

    @worker("slow")
    async def slow(ctx):
        await asyncio.Event().wait()
        return {}

    wf = WorkflowBuilder("w").add_step("s", slow).build()
    rt = make_runtime(workflows=[wf])
    await rt.start()
    tid = await rt.execute_workflow("w", {})
    waiter = asyncio.ensure_future(rt.wait(tid))
    await asyncio.sleep(0)
    await rt.stop()
    with pytest.raises(MultiAgentsError, match="resumes at the next start"):
        await waiter


def test_definition_to_dict_describes_every_node():
    """to_dict lists steps, parallel branches and conditional paths with their resolved options."""
    wf = (
        WorkflowBuilder("w")
        .add_step("a", "wa", compensation="ua", timeout=5)
        .add_parallel("p", [Step("b", "wb"), Step("c", "wc")])
        .add_conditional("x.y", Step("d", "wd"), [Step("e", "we")], name="choose")
        .build()
    )
    d = wf.to_dict()
    assert d["id"] == "w" and d["fingerprint"] == wf.fingerprint
    a, p, cond = d["nodes"]
    assert (a["type"], a["worker"], a["compensation"], a["timeout"]) == ("step", "wa", "ua", 5.0)
    assert a["retry_policy"]["max_attempts"] == 3
    assert [b["name"] for b in p["branches"]] == ["b", "c"]
    assert (cond["name"], cond["condition"]) == ("choose", "x.y")
    assert [s["name"] for s in cond["true_path"]] == ["d"]
    assert [s["name"] for s in cond["false_path"]] == ["e"]


def test_old_dict_policy_with_a_long_initial_delay_and_bad_max_retries():
    """A long initial_delay raises the unset cap; a bad max_retries is named, with the step it belongs to."""
    long = RetryPolicy.from_dict({"max_retries": 3, "initial_delay": 120})
    assert (long.max_attempts, long.initial_seconds, long.max_seconds) == (4, 120.0, 120.0)
    with pytest.raises(DefinitionError, match=r"step 'a' retry_policy: max_retries must be a whole number"):
        WorkflowBuilder("w").add_step("a", "x", retry_policy={"max_retries": "x"})
    with pytest.raises(DefinitionError, match="max_retries must be a whole number >= 0, got -1"):
        RetryPolicy.from_dict({"max_retries": -1})


async def test_common_mistakes_get_one_clear_sentence(make_runtime, clock):
    """Passing a definition for its id works; a bad state filter or option is named, not a TypeError."""

    @worker("noop")
    async def noop(ctx):
        return {}

    wf = WorkflowBuilder("w").add_step("s", noop).build()
    with pytest.raises(DefinitionError, match="take lists"):
        make_runtime(workflows=wf)
    with pytest.raises(DefinitionError, match="unknown options \\['retries'\\]"):
        WorkflowBuilder("w").add_step("s", noop, retries=3)
    rt = make_runtime(workflows=[wf])
    from multiagents import MultiAgentsError

    with pytest.raises(MultiAgentsError, match="not running"):
        await rt.get_status("x")
    async with rt:
        status = await clock.run_until(rt.wait(await rt.execute_workflow(wf, {})))
        assert status["state"] == SagaState.COMPLETED
        with pytest.raises(ValidationError, match="unknown state 'done'"):
            await rt.list_workflows(state="done")
        with pytest.raises(ValueError, match="unknown error filter worker"):
            rt.error_tracker.get_error_summary(worker="noop")
