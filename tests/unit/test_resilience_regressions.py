"""Regressions in circuit breakers, in-process retries, schema validation and error tracking.

Each test pins a behaviour the documentation promises (or the seed's interface requires) and that the
implementation did not deliver when the test was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from multiagents import FakeClock, RetryPolicy, SagaState, WorkflowBuilder, schema_model, worker
from multiagents.errors import StoreError
from multiagents.messages import Command, Kind
from multiagents.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitState,
    MemoryBreakerStore,
    retry,
)
from multiagents.tracking import ErrorTracker

T = TypeVar("T")


class FlakyBreakerStore:
    """A shared breaker store (async only, like Redis) whose reads or writes fail while told to."""

    def __init__(self, *, failing_loads: int = 0, failing_applies: int = 0) -> None:
        self.inner = MemoryBreakerStore()
        self.failing_loads = failing_loads
        self.failing_applies = failing_applies

    async def load(self, name: str) -> BreakerState:
        if self.failing_loads:
            self.failing_loads -= 1
            raise StoreError(f"could not read circuit breaker {name!r}: connection reset")
        return self.inner.peek(name)

    async def apply(self, name: str, fn: Callable[[BreakerState], tuple[BreakerState, T]]) -> T:
        if self.failing_applies:
            self.failing_applies -= 1
            raise StoreError(f"could not write circuit breaker {name!r}: connection reset")
        return self.inner.apply_now(name, fn)


def _command(context: dict[str, Any], worker_name: str, breaker: str | None = None) -> Command:
    return Command(
        transaction_id="t1",
        workflow_id="wf",
        step="s",
        worker=worker_name,
        kind=Kind.EXECUTE,
        attempt=1,
        attempt_id="t1:s:1",
        idempotency_key="t1:s",
        context=context,
        deadline=None,
        timeout=None,
        circuit_breaker=breaker,
    )


# -- circuit breakers --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_decorating_an_object_with_async_call_guards_it_as_async(clock: FakeClock) -> None:
    """@breaker on an instance whose __call__ is async guards it as an async call, as @retry does.

    Today it is taken for a sync function: every call raises DefinitionError, the coroutine is never
    awaited, and the breaker counts its own DefinitionError as a failure of the service and opens.
    """

    class Client:
        async def __call__(self, x: int) -> int:
            return x * 2

    breaker = CircuitBreaker("svc", failure_threshold=2, clock=clock)
    guarded: Any = breaker(Client())
    results: list[Any] = []
    problems: list[str] = []
    for _ in range(3):
        try:
            outcome = guarded(21)
            results.append(await outcome if asyncio.iscoroutine(outcome) else outcome)
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
            exc.__traceback__ = None  # its frames hold the coroutine the breaker dropped
    gc.collect()  # so that the dropped coroutine warns here (ignored above), not in a later test
    assert problems == []
    assert results == [42, 42, 42]
    assert breaker.state is CircuitState.CLOSED and breaker.failure_count == 0


async def test_a_late_failure_of_a_call_admitted_while_closed_does_not_reopen_a_half_open_breaker(
    clock: FakeClock,
) -> None:
    """Only probes decide a half-open breaker: a slow call let through before it opened changes nothing.

    The module docstring: "The first probe to succeed closes the breaker; one that fails re-opens it ...
    Outcomes that arrive while the breaker is open (calls let through before it opened) change nothing."
    ``call()`` knows which call holds the probe, yet a stale non-probe failure re-opens the breaker for a
    fresh recovery_timeout and the probe's success that follows is then ignored.
    """
    breaker = CircuitBreaker("svc", failure_threshold=1, recovery_timeout=10, clock=clock)
    release_old = asyncio.Event()
    release_probe = asyncio.Event()

    async def old_call() -> None:
        await release_old.wait()
        raise ConnectionError("timed out on the outage that opened the breaker")

    async def probe() -> str:
        await release_probe.wait()
        return "recovered"

    async def fail() -> None:
        raise ConnectionError("down")

    old = asyncio.ensure_future(breaker.call(old_call))
    await asyncio.sleep(0)  # admitted while closed
    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    assert breaker.state is CircuitState.OPEN
    await clock.advance(10)
    probing = asyncio.ensure_future(breaker.call(probe))
    await asyncio.sleep(0)
    assert breaker.state is CircuitState.HALF_OPEN
    release_old.set()
    with pytest.raises(ConnectionError):
        await old
    release_probe.set()
    assert await probing == "recovered"
    assert breaker.state is CircuitState.CLOSED


async def test_releasing_a_call_admitted_while_closed_does_not_free_the_probe_slot(clock: FakeClock) -> None:
    """At most half_open_max_calls probes are in flight: releasing a non-probe call must not free a slot.

    The engine's worker side releases every cancelled guarded call; told which calls were probes (the
    engine carries the flag on the command), a call admitted while closed and cancelled after the breaker
    half-opened must not free the real probe's slot.
    """
    breaker = CircuitBreaker("svc", failure_threshold=1, recovery_timeout=10, clock=clock)
    call_a = await breaker.admit()  # call A, admitted while closed, still running
    assert call_a.retry_after is None and not call_a.probe
    await breaker.record_failure(ConnectionError("down"))  # another call fails: open
    await clock.advance(10)
    assert (await breaker.admit()).probe  # the probe
    await breaker.release(probe=call_a.probe)  # call A is cancelled, and says it was no probe
    assert await breaker.allow() is not None  # the probe is still in flight: refuse a second one


async def test_a_probe_whose_input_fails_validation_frees_its_probe_slot(clock: FakeClock) -> None:
    """A probe attempt that never reaches the service (its input is invalid) gives its slot back at once.

    Worker.run validates the input before ``_guarded`` reports to the breaker, so the probe reports
    nothing: the slot stays taken for a whole recovery_timeout and every parked step is refused meanwhile.
    """
    from multiagents.worker import Worker

    breaker = CircuitBreaker("svc", failure_threshold=1, recovery_timeout=60, clock=clock)
    await breaker.record_failure(ConnectionError("down"))
    await clock.advance(60)
    assert await breaker.allow() is None  # the engine let this command through as the probe

    async def charge(ctx: Any) -> dict[str, Any]:
        return {"charged": True}

    guarded = Worker(
        charge, "charge", input_model=schema_model({"amount": {"required": True, "type": float}})
    )
    result = await guarded.run(_command({}, "charge", "svc"), clock, breaker=breaker)
    assert result.error is not None and result.error.category.value == "validation"
    assert await breaker.allow() is None  # the next parked step may probe now


async def test_a_breaker_store_failure_after_a_successful_step_does_not_fail_the_step(
    make_runtime: Any, clock: FakeClock
) -> None:
    """A step whose service call succeeded succeeds, even if recording that success on its breaker fails.

    Today the StoreError from ``record_success`` replaces the worker's result: the charge happened, the
    step is reported failed (unexpected, no retry), and the saga fails without the charge being undone.
    """
    charges: list[int] = []

    @worker("charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        charges.append(1)
        return {"charged": True}

    wf = WorkflowBuilder("pay").add_step("charge", charge, circuit_breaker="payment").build()
    breaker = CircuitBreaker("payment", window=60)  # failure-rate mode: every success is written
    store = FlakyBreakerStore(failing_applies=1)
    async with make_runtime(workflows=[wf], breakers=[breaker], breaker_store=store) as rt:
        status = await clock.run_until(rt.run("pay", {}))
    assert charges == [1]
    assert status["state"] == SagaState.COMPLETED, status["error"]


async def test_execute_workflow_does_not_raise_when_the_breaker_store_fails_at_dispatch(
    make_runtime: Any, clock: FakeClock
) -> None:
    """A stored, started workflow is reported as started even if its first dispatch could not ask the breaker.

    Today the StoreError of ``allow()`` in the engine's gate reaches the caller of execute_workflow,
    although the workflow is already stored and running: a caller that retries starts a second saga.
    """

    @worker("charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"charged": True}

    wf = WorkflowBuilder("pay").add_step("charge", charge, circuit_breaker="payment", timeout=30).build()
    store = FlakyBreakerStore(failing_loads=1)
    async with make_runtime(workflows=[wf], breaker_store=store) as rt:
        tid = await rt.execute_workflow("pay", {})
        assert isinstance(tid, str)


async def test_a_breaker_store_failure_at_dispatch_does_not_strand_the_workflow(
    make_runtime: Any, clock: FakeClock
) -> None:
    """After one failed breaker read at dispatch, the workflow still finishes (its lease brings it back).

    Today the exception escapes ``Engine._process`` after the commit and before the instances' timers are
    armed, so nothing ever wakes the workflow again: it stays running until the process restarts.
    """

    @worker("charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"charged": True}

    wf = WorkflowBuilder("pay").add_step("charge", charge, circuit_breaker="payment", timeout=30).build()
    store = FlakyBreakerStore(failing_loads=1)
    async with make_runtime(workflows=[wf], breaker_store=store) as rt:
        with contextlib.suppress(StoreError):  # pinned by the test above
            await rt.execute_workflow("pay", {})
        (started,) = await rt.list_workflows()
        tid = started["transaction_id"]
        for _ in range(10):
            await clock.advance(30)
        status = await rt.get_status(tid)
    assert status["state"] == SagaState.COMPLETED


# -- error tracking ----------------------------------------------------------------------------------


async def test_error_context_snapshot_keeps_string_values_as_they_were(
    make_runtime: Any, clock: FakeClock
) -> None:
    """The redacted context of a failed attempt shows "A1" as "A1", not wrapped in quotes (twice).

    ``redact`` turns every short string into its repr, and the snapshot is redacted twice (in the worker
    and again in ``error_record``), so {"order_id": "A1"} is stored as {"order_id": "\\"'A1'\\""}.
    """
    from multiagents.errors import WorkerExecutionError

    @worker("bad")
    async def bad(ctx: dict[str, Any]) -> dict[str, Any]:
        raise WorkerExecutionError("refused")

    wf = WorkflowBuilder("w").add_step("s", bad).build()
    async with make_runtime(workflows=[wf]) as rt:
        await clock.run_until(rt.run("w", {"order_id": "A1", "items": ["x"], "password": "hunter2"}))
        (record,) = await rt.error_tracker.query()
    assert record["context_data"] == {"order_id": "A1", "items": ["x"], "password": "***"}


def test_redact_masks_the_common_secret_key_names() -> None:
    """Keys that look like secrets are masked (architecture.md): pwd, access_key, cookie and sessionid too.

    The pattern catches password/secret/token/api_key/auth but not these, which error-reporting tools
    mask by default; a failed attempt's snapshot then stores a database password or a session cookie.
    """
    from multiagents.tracking import redact

    out = redact({"db_pwd": "hunter2", "aws_access_key": "AKIA1", "cookie": "sid=1", "sessionid": "s1"})
    assert set(out.values()) == {"***"}


def test_summary_survives_a_recorded_at_in_the_seeds_iso_format() -> None:
    """One recorded dict carrying the seed's ISO-format recorded_at must not break every later summary.

    The seed's record_error always stamps its own recorded_at. Ours keeps a caller's ``recorded_at``
    (setdefault) and then computes ``now - recorded_at``, so a record forwarded from the seed's tracker
    (an ISO string) makes every later get_error_summary raise TypeError.
    """
    tracker = ErrorTracker()
    tracker.record_error(
        {
            "error_type": "validation_error",
            "worker_name": "w",
            "recorded_at": datetime.now(UTC).isoformat(),
        }
    )
    summary = tracker.get_error_summary()
    assert summary["total_errors"] == 1


def test_standalone_tracker_has_the_seeds_count_attributes() -> None:
    """ErrorTracker() "works as the seed's class" (README), so it has error_counts and error_patterns."""
    tracker = ErrorTracker()
    tracker.record_error({"error_type": "connection_error", "worker_name": "pay"})
    tracker.record_error({"error_type": "connection_error", "worker_name": "pay"})
    assert tracker.error_counts == {"connection_error": 2}  # type: ignore[attr-defined]
    assert tracker.error_patterns == {"pay:connection_error": 2}  # type: ignore[attr-defined]


def test_standalone_tracker_summarises_while_another_thread_records() -> None:
    """Sync workers run in threads: reading a summary while a thread records must not raise.

    ``_ListLog.query_sync`` iterates the deque that ``record_sync`` extends, without a lock, so a summary
    taken while another thread records raises "RuntimeError: deque mutated during iteration".
    """
    tracker = ErrorTracker()
    for _ in range(2000):
        tracker.record_error({"error_type": "connection_error", "worker_name": "w"})
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            tracker.record_error({"error_type": "connection_error", "worker_name": "w"})

    failures: list[BaseException] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that the race shows within a few reads
    thread = threading.Thread(target=record)
    thread.start()
    try:
        for _ in range(50):
            try:
                tracker.get_error_summary()
            except RuntimeError as exc:
                failures.append(exc)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert failures == []


async def test_runtime_tracker_records_values_that_are_not_json(make_runtime: Any) -> None:
    """A Runtime's tracker records any dict, as the seed's does, even with a Decimal or an exception in it.

    The standalone tracker keeps such values; the store-backed one JSON-encodes the record and raises
    TypeError from record_error, in the middle of the caller's own error handling.
    """
    async with make_runtime() as rt:
        rt.error_tracker.record_error(
            {
                "error_type": "payment_error",
                "worker_name": "charge",
                "amount": Decimal("19.99"),
                "exception": ValueError("card declined"),
            }
        )
        summary = rt.error_tracker.get_error_summary()
    assert summary["total_errors"] == 1


# -- in-process retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_retry_raises_a_stop_iteration_from_the_function_unchanged(clock: FakeClock, kind: str) -> None:
    """ "When the answer is no, the last exception is raised unchanged": StopIteration/StopAsyncIteration too.

    ``delay_after`` re-raises the exception inside ``__next__``/``__anext__``, where StopIteration and
    StopAsyncIteration end the loop silently; the decorator then raises AssertionError("unreachable...")
    (and a ``retrying()`` block simply carries on as if the attempt had succeeded).
    """
    policy = RetryPolicy(max_attempts=3, jitter=0)
    if kind == "async":

        @retry(policy, clock=clock)
        async def first_async(it: Any) -> Any:
            return await anext(it)

        async def empty() -> Any:
            return
            yield

        with pytest.raises(StopAsyncIteration):
            await first_async(empty())
    else:

        @retry(policy, clock=clock)
        def first(it: Any) -> Any:
            return next(it)

        with pytest.raises(StopIteration):
            first(iter([]))


async def test_a_raising_on_retry_listener_does_not_hide_the_failure_it_was_told_about(
    clock: FakeClock,
) -> None:
    """A bug in on_retry must not hide the call's own error: retries go on, or at least the error is chained.

    notifications.py makes it a rule that a listener's bug never fails the call it listens to; on_retry
    instead aborts the retries and raises its own KeyError with no trace of the ConnectionError.
    """
    attempts = 0

    def listener(event: Any) -> None:
        raise KeyError("dashboard field missing")

    @retry(RetryPolicy(max_attempts=3, initial_interval=1, jitter=0), clock=clock, on_retry=listener)
    async def fetch() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("service down")
        return "ok"

    try:
        result = await clock.run_until(fetch())
    except KeyError as exc:
        assert isinstance(exc.__cause__ or exc.__context__, ConnectionError)
    else:
        assert result == "ok" and attempts == 3


# -- validation --------------------------------------------------------------------------------------


async def test_workflow_and_worker_can_share_a_schema_model_with_optional_fields(
    make_runtime: Any, clock: FakeClock
) -> None:
    """A schema model as a workflow's input_model leaves absent optional keys absent from the context.

    execute_workflow merges ``model.model_dump(mode="json")`` into the context, which fills every absent
    optional field with None (and adds renamed keys under their attribute names, "field_0"); a worker
    validating with the same schema then fails, since None is not an int.
    """
    schema = {
        "user_id": {"required": True, "type": str, "min_length": 1},
        "age": {"required": False, "type": int, "min": 0, "max": 150},
        "user-ref": {"required": False, "type": str},
    }
    model = schema_model(schema)

    @worker("register", input_model=model)
    async def register(ctx: Any) -> dict[str, Any]:
        return {"registered": ctx.user_id}

    wf = WorkflowBuilder("signup", input_model=model).add_step("register", register).build()
    async with make_runtime(workflows=[wf]) as rt:
        status = await clock.run_until(rt.run("signup", {"user_id": "u1"}))
    assert status["state"] == SagaState.COMPLETED, status["error"]
    assert "age" not in status["context"] and "field_0" not in status["context"]
