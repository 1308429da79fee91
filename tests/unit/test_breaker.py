"""Circuit breakers on the in-memory store with a fake clock, and the pure transition with hypothesis."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiagents import FakeClock
from multiagents.errors import CircuitBreakerOpenError, DefinitionError, StoreError
from multiagents.resilience import (
    BreakerRegistry,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    Decision,
    Event,
    MemoryBreakerStore,
    transition,
)
from multiagents.resilience.breaker import WINDOW_BUCKETS
from multiagents.resilience.notifications import HISTORY


class Boom(Exception):
    pass


async def fail() -> None:
    raise Boom("down")


async def ok() -> str:
    return "ok"


def make(clock: FakeClock, **kwargs: Any) -> CircuitBreaker:
    kwargs.setdefault("failure_threshold", 3)
    kwargs.setdefault("recovery_timeout", 60)
    return CircuitBreaker("payment_service", clock=clock, **kwargs)


async def fail_times(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            await breaker.call(fail)


# -- consecutive mode ----------------------------------------------------------------------------


async def test_opens_after_exactly_threshold_consecutive_failures(clock: FakeClock) -> None:
    """threshold-1 failures leave it closed; the threshold-th opens it and the next call is refused unmade."""
    breaker = make(clock)
    await fail_times(breaker, 2)
    assert (breaker.state, breaker.failure_count) == (CircuitState.CLOSED, 2)
    await fail_times(breaker, 1)
    assert (breaker.state, breaker.failure_count) == (CircuitState.OPEN, 3)
    calls = []
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(lambda: calls.append(1))
    assert calls == []


async def test_success_in_between_resets_the_count(clock: FakeClock) -> None:
    """fail, fail, succeed, fail, fail stays closed with a count of 2: only consecutive failures count."""
    breaker = make(clock)
    await fail_times(breaker, 2)
    assert await breaker.call(ok) == "ok"
    assert breaker.failure_count == 0
    await fail_times(breaker, 2)
    assert (breaker.state, breaker.failure_count) == (CircuitState.CLOSED, 2)


async def test_rejects_while_open_with_time_left_until_half_open(clock: FakeClock) -> None:
    """Open 10 s into a 60 s recovery: call() raises with retry_after 50 and the name; allow() says 50."""
    breaker = make(clock)
    await fail_times(breaker, 3)
    opened_at = clock.now()
    await clock.advance(10)
    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.call(ok)
    assert info.value.retry_after == pytest.approx(opened_at + 60 - clock.now())
    assert info.value.retry_after == pytest.approx(50)
    assert info.value.breaker == "payment_service"
    assert "payment_service" in str(info.value)
    assert await breaker.allow() == pytest.approx(50)
    snap = await breaker.snapshot()
    assert snap["state"] == "open"
    assert snap["opened_at"] == opened_at
    assert snap["retry_after"] == pytest.approx(50)


async def test_half_open_lets_exactly_max_probes_through_concurrently(clock: FakeClock) -> None:
    """After recovery with half_open_max_calls=2, of five concurrent calls two run and three are refused."""
    breaker = make(clock, half_open_max_calls=2)
    await fail_times(breaker, 3)
    await clock.advance(60)
    gate = asyncio.Event()
    running = []

    async def probe(i: int) -> int:
        running.append(i)
        await gate.wait()
        return i

    tasks = [asyncio.ensure_future(breaker.call(probe, i)) for i in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(running) == 2
    assert breaker.state is CircuitState.HALF_OPEN
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [r for r in results if isinstance(r, CircuitBreakerOpenError)]
    assert len(refused) == 3
    assert all(r.retry_after > 0 for r in refused)
    assert sorted(r for r in results if isinstance(r, int)) == sorted(running)
    assert breaker.state is CircuitState.CLOSED


async def test_probe_success_closes(clock: FakeClock) -> None:
    """The half-open probe's success closes the breaker with a zero count, and calls flow again."""
    breaker = make(clock)
    await fail_times(breaker, 3)
    await clock.advance(60)
    assert await breaker.call(ok) == "ok"
    assert (breaker.state, breaker.failure_count) == (CircuitState.CLOSED, 0)
    assert await breaker.allow() is None


async def test_probe_failure_reopens_with_a_fresh_recovery_timeout(clock: FakeClock) -> None:
    """A failed probe re-opens the breaker; retry_after is the full recovery_timeout again from then."""
    breaker = make(clock)
    await fail_times(breaker, 3)
    await clock.advance(75)
    await fail_times(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert await breaker.allow() == pytest.approx(60)
    await clock.advance(59)
    assert await breaker.allow() == pytest.approx(1)
    await clock.advance(1)
    assert await breaker.allow() is None
    assert breaker.state is CircuitState.HALF_OPEN


async def test_unexpected_exceptions_pass_through_and_do_not_count(clock: FakeClock) -> None:
    """With expected_exception=Boom, a KeyError is re-raised as the same object and leaves the count at 0."""
    breaker = make(clock, expected_exception=Boom, failure_threshold=1)
    error = KeyError("nope")

    async def other() -> None:
        raise error

    for _ in range(5):
        with pytest.raises(KeyError) as info:
            await breaker.call(other)
        assert info.value is error
    assert (breaker.state, breaker.failure_count) == (CircuitState.CLOSED, 0)
    await breaker.record_failure(ValueError("not counted"))
    assert breaker.failure_count == 0
    await breaker.record_failure(Boom("counted"))
    assert breaker.state is CircuitState.OPEN


async def test_probe_with_uncounted_exception_frees_its_slot(clock: FakeClock) -> None:
    """In half-open a probe that raises an uncounted exception frees its slot: the next caller probes."""
    breaker = make(clock, expected_exception=Boom)
    await fail_times(breaker, 3)
    await clock.advance(60)

    async def other() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await breaker.call(other)
    assert breaker.state is CircuitState.HALF_OPEN
    assert await breaker.allow() is None  # the freed slot
    assert await breaker.allow() is not None  # and only one
    await breaker.record_failure(KeyError("x"))  # the engine's form: inferred as the probe's outcome
    assert await breaker.allow() is None


async def test_a_lost_probe_holds_its_slot_for_at_most_recovery_timeout(clock: FakeClock) -> None:
    """A probe that never reports blocks others for one recovery_timeout, then a new probe is let through."""
    breaker = make(clock)
    await fail_times(breaker, 3)
    await clock.advance(60)
    assert await breaker.allow() is None  # this probe's process dies
    await clock.advance(30)
    assert await breaker.allow() == pytest.approx(1)  # busy: ask again soon, not after the whole lease
    await clock.advance(29)
    assert await breaker.allow() == pytest.approx(1)
    await clock.advance(1)
    assert await breaker.allow() is None  # a whole recovery_timeout without news: the slot is free


async def test_engine_primitives_allow_and_record_without_raising(clock: FakeClock) -> None:
    """allow() never raises; record_failure(None) counts; record_success closes a half-open breaker."""
    breaker = make(clock, failure_threshold=2)
    assert await breaker.allow() is None
    await breaker.record_failure(None)
    await breaker.record_failure(Boom())
    assert breaker.state is CircuitState.OPEN
    assert await breaker.allow() == pytest.approx(60)
    await clock.advance(60)
    assert await breaker.allow() is None
    await breaker.record_success()
    assert breaker.state is CircuitState.CLOSED


async def test_closed_successes_write_nothing(clock: FakeClock) -> None:
    """On a closed breaker with no failures, a thousand successful calls leave the stored version at 0."""
    store = MemoryBreakerStore()
    breaker = CircuitBreaker("svc", store=store, clock=clock)
    for _ in range(1000):
        await breaker.call(ok)
    assert store.peek("svc").version == 0
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert store.peek("svc").version == 1


# -- failure-rate mode and slow calls ------------------------------------------------------------


async def test_window_mode_opens_on_rate_not_below_min_calls(clock: FakeClock) -> None:
    """window=60, min_calls=10, rate 0.5: 9 failures in a row stay closed (too few calls); the 10th opens it;
    8 successes and 4 failures (a third) stay closed, ignoring failure_threshold."""
    breaker = make(clock, window=60, min_calls=10, failure_rate=0.5)
    await fail_times(breaker, 9)
    assert (breaker.state, breaker.failure_count) == (CircuitState.CLOSED, 9)
    await fail_times(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    breaker = make(clock, window=60, min_calls=10, failure_rate=0.5)
    for _ in range(8):
        await breaker.call(ok)
    await fail_times(breaker, 4)
    assert breaker.state is CircuitState.CLOSED


async def test_window_mode_opens_exactly_at_the_rate(clock: FakeClock) -> None:
    """5 successes then 5 failures is exactly 0.5 over 10 calls: the fifth failure opens the breaker."""
    breaker = make(clock, window=60, min_calls=10, failure_rate=0.5, failure_threshold=100)
    for _ in range(5):
        await breaker.call(ok)
    await fail_times(breaker, 4)
    snap = await breaker.snapshot()
    assert (snap["calls"], snap["failures"], snap["state"]) == (9, 4, "closed")
    await fail_times(breaker, 1)
    assert breaker.state is CircuitState.OPEN


async def test_window_mode_forgets_samples_older_than_the_window(clock: FakeClock) -> None:
    """Failures more than a window (plus one bucket) ago no longer count towards the rate or min_calls."""
    breaker = make(clock, window=60, min_calls=10, failure_rate=0.5)
    await fail_times(breaker, 9)
    await clock.advance(66)  # 60 s window, 6 s buckets
    snap = await breaker.snapshot()
    assert (snap["calls"], snap["failures"]) == (0, 0)
    await fail_times(breaker, 9)
    assert breaker.state is CircuitState.CLOSED
    await fail_times(breaker, 1)
    assert breaker.state is CircuitState.OPEN


async def test_slow_calls_count_as_failures(clock: FakeClock) -> None:
    """slow_call_threshold=1: a call taking 2 s (fake) returns its result but counts as a failure."""
    breaker = make(clock, failure_threshold=2, slow_call_threshold=1)

    async def slow() -> str:
        await clock.advance(2)
        return "late"

    assert await breaker.call(slow) == "late"
    assert breaker.failure_count == 1
    assert await breaker.call(ok) == "ok"
    assert breaker.failure_count == 0
    await breaker.record_success(duration=1.5)
    await breaker.record_success(duration=3.0)
    assert breaker.state is CircuitState.OPEN


# -- decorator, registry, config -----------------------------------------------------------------


async def test_decorator_on_async_function_keeps_signature_and_guards(clock: FakeClock) -> None:
    """@breaker on an async function keeps name and signature, counts failures, then refuses."""
    breaker = make(clock, failure_threshold=2)

    @breaker
    async def charge(amount: int, *, currency: str = "EUR") -> dict[str, Any]:
        """Charge a card."""
        if amount < 0:
            raise Boom("declined")
        return {"amount": amount, "currency": currency}

    assert charge.__name__ == "charge" and charge.__doc__ == "Charge a card."
    assert str(inspect.signature(charge)) == "(amount: 'int', *, currency: 'str' = 'EUR') -> 'dict[str, Any]'"
    assert inspect.iscoroutinefunction(charge)
    assert await charge(5, currency="USD") == {"amount": 5, "currency": "USD"}
    for _ in range(2):
        with pytest.raises(Boom):
            await charge(-1)
    with pytest.raises(CircuitBreakerOpenError):
        await charge(5)


def test_decorator_on_sync_function_stays_sync(clock: FakeClock) -> None:
    """@breaker on a sync function returns a sync function that counts failures and refuses when open."""
    breaker = make(clock, failure_threshold=2)
    calls = []

    @breaker
    def lookup(key: str) -> str:
        calls.append(key)
        if key == "bad":
            raise Boom(key)
        return key.upper()

    assert not inspect.iscoroutinefunction(lookup)
    assert str(inspect.signature(lookup)) == "(key: 'str') -> 'str'"
    assert lookup("a") == "A"
    for _ in range(2):
        with pytest.raises(Boom):
            lookup("bad")
    with pytest.raises(CircuitBreakerOpenError):
        lookup("a")
    assert calls == ["a", "bad", "bad"]


async def test_call_accepts_sync_functions(clock: FakeClock) -> None:
    """call() runs a sync function and returns its value, counting its exceptions like an async one's."""
    breaker = make(clock, failure_threshold=1)
    assert await breaker.call(lambda x: x * 2, 21) == 42

    def broken() -> None:
        raise Boom()

    with pytest.raises(Boom):
        await breaker.call(broken)
    assert breaker.state is CircuitState.OPEN


async def test_registry_one_breaker_per_name_and_defaults_for_unknown(clock: FakeClock) -> None:
    """get() returns the configured breaker each time, and a defaults breaker, made once, for a new name."""
    payment = CircuitBreaker("payment_service", failure_threshold=3, recovery_timeout=30)
    registry = BreakerRegistry(
        breakers=[payment], clock=clock, defaults=CircuitBreakerConfig(failure_threshold=7)
    )
    assert registry.get("payment_service") is payment
    other = registry.get("inventory_service")
    assert other is registry.get("inventory_service")
    assert other.config.failure_threshold == 7
    assert registry.names() == ["payment_service", "inventory_service"]
    await fail_times(payment, 3)
    snaps = {s["name"]: s for s in await registry.snapshots()}
    assert snaps["payment_service"]["state"] == "open"
    assert snaps["payment_service"]["retry_after"] == pytest.approx(30)  # the registry's clock was adopted
    assert snaps["inventory_service"]["state"] == "closed"
    with pytest.raises(DefinitionError, match="payment_service"):
        BreakerRegistry(breakers=[payment, CircuitBreaker("payment_service")])


async def test_registry_store_is_adopted_by_breakers_given_without_one(clock: FakeClock) -> None:
    """A breaker built without a store keeps its state in the registry's store; one with its own keeps it."""
    shared, own = MemoryBreakerStore(), MemoryBreakerStore()
    plain = CircuitBreaker("a", failure_threshold=1, clock=clock)
    pinned = CircuitBreaker("b", failure_threshold=1, store=own, clock=clock)
    BreakerRegistry(breakers=[plain, pinned], store=shared, clock=clock)
    await fail_times(plain, 1)
    await fail_times(pinned, 1)
    assert shared.peek("a").state is CircuitState.OPEN
    assert own.peek("b").state is CircuitState.OPEN
    assert shared.peek("b").state is CircuitState.CLOSED


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failure_threshold", 0),
        ("failure_threshold", 2.5),
        ("recovery_timeout", 0),
        ("recovery_timeout", -1),
        ("recovery_timeout", "60"),
        ("half_open_max_calls", 0),
        ("window", 0),
        ("min_calls", 0),
        ("failure_rate", 0),
        ("failure_rate", 1.5),
        ("slow_call_threshold", timedelta(0)),
        ("expected_exception", "Exception"),
        ("expected_exception", (Exception, 3)),
    ],
)
def test_bad_config_raises_definition_error_naming_the_field(field: str, value: Any) -> None:
    """Each invalid option is refused at construction with a DefinitionError whose message names it."""
    with pytest.raises(DefinitionError, match=field):
        CircuitBreakerConfig(**{field: value})
    with pytest.raises(DefinitionError, match=field):
        CircuitBreaker("svc", **{field: value})


def test_durations_accept_timedelta_and_types_accept_tuples() -> None:
    """timedelta durations are normalised to seconds; a tuple of exception types is accepted as given."""
    config = CircuitBreakerConfig(
        recovery_timeout=timedelta(minutes=2),
        window=timedelta(seconds=30),
        slow_call_threshold=timedelta(milliseconds=500),
        expected_exception=(ConnectionError, TimeoutError),
    )
    assert (config.recovery_timeout, config.window, config.slow_call_threshold) == (120.0, 30.0, 0.5)
    assert config.expected_exception == (ConnectionError, TimeoutError)
    with pytest.raises(DefinitionError, match="name"):
        CircuitBreaker("")


# -- transition notifications --------------------------------------------------------------------


def listen() -> tuple[list[BreakerTransition], Any]:
    seen: list[BreakerTransition] = []
    return seen, seen.append


async def test_opening_notifies_once_with_the_time_until_half_open(clock: FakeClock) -> None:
    """The threshold-th failure notifies closed -> open once, with the count, the time and retry_after 60;
    refused calls after it notify nothing."""
    seen, hook = listen()
    breaker = make(clock, on_transition=hook)
    await fail_times(breaker, 2)
    assert seen == []
    await clock.advance(5)
    await fail_times(breaker, 1)
    opened = BreakerTransition(
        "payment_service", CircuitState.CLOSED, CircuitState.OPEN, 3, clock.now(), retry_after=60.0
    )
    assert seen == [opened]
    await clock.advance(10)
    for _ in range(3):
        with pytest.raises(CircuitBreakerOpenError):
            await breaker.call(ok)
    assert await breaker.allow() == pytest.approx(50)
    assert seen == [opened]
    assert breaker.transitions == [opened]
    assert (await breaker.snapshot())["transitions"] == [opened.to_dict()]


async def test_probe_success_notifies_half_open_then_closed(clock: FakeClock) -> None:
    """After recovery a successful probe notifies open -> half_open as it is let through, then
    half_open -> closed when it returns; neither carries a retry_after."""
    seen, hook = listen()
    breaker = make(clock, on_transition=hook)
    await fail_times(breaker, 3)
    await clock.advance(60)
    states_during_probe: list[CircuitState] = []

    async def probe() -> str:
        states_during_probe.append(breaker.state)
        return "ok"

    assert await breaker.call(probe) == "ok"
    assert states_during_probe == [CircuitState.HALF_OPEN]
    assert [(t.old, t.new) for t in seen] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert [(t.at, t.retry_after, t.failure_count) for t in seen[1:]] == [
        (clock.now(), None, 3),
        (clock.now(), None, 0),
    ]
    assert breaker.transitions == seen


async def test_probe_failure_notifies_half_open_to_open_with_a_fresh_retry_after(clock: FakeClock) -> None:
    """A failed probe notifies half_open -> open with the full recovery_timeout as retry_after."""
    seen, hook = listen()
    breaker = make(clock, on_transition=hook)
    await fail_times(breaker, 3)
    await clock.advance(75)
    await fail_times(breaker, 1)
    assert seen[-1] == BreakerTransition(
        "payment_service", CircuitState.HALF_OPEN, CircuitState.OPEN, 4, clock.now(), retry_after=60.0
    )
    assert len(seen) == 3


async def test_a_raising_callback_is_logged_and_never_breaks_a_call(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises: call() still raises the service's own error, opens, refuses and later closes
    the breaker; each failure of the callback is logged with its traceback."""

    def broken(change: BreakerTransition) -> None:
        raise RuntimeError(f"listener down on {change.new}")

    breaker = make(clock, on_transition=broken)
    with caplog.at_level("ERROR", logger="multiagents.breaker"):
        await fail_times(breaker, 3)  # the third one opens the breaker and runs the callback
        with pytest.raises(CircuitBreakerOpenError):
            await breaker.call(ok)
        await clock.advance(60)
        assert await breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError] * 3
    assert "payment_service" in caplog.records[0].getMessage()
    assert len(breaker.transitions) == 3  # the history is kept even when the callback fails


def test_sync_decorated_function_notifies_too(clock: FakeClock) -> None:
    """A sync function guarded with @breaker notifies closed -> open from the sync path."""
    seen, hook = listen()
    breaker = make(clock, failure_threshold=1, on_transition=hook)

    @breaker
    def lookup() -> None:
        raise Boom()

    with pytest.raises(Boom):
        lookup()
    assert [(t.old, t.new, t.retry_after) for t in seen] == [(CircuitState.CLOSED, CircuitState.OPEN, 60.0)]


async def test_registry_callback_is_inherited_unless_a_breaker_has_its_own(clock: FakeClock) -> None:
    """A breaker without a callback and one made by get() notify the registry's; one with its own, its own."""
    shared_seen, shared_hook = listen()
    own_seen, own_hook = listen()
    plain = CircuitBreaker("a", failure_threshold=1, clock=clock)
    pinned = CircuitBreaker("b", failure_threshold=1, clock=clock, on_transition=own_hook)
    registry = BreakerRegistry(
        [plain, pinned],
        clock=clock,
        defaults=CircuitBreakerConfig(failure_threshold=1),
        on_transition=shared_hook,
    )
    made = registry.get("c")
    for breaker in (plain, pinned, made):
        await breaker.record_failure(Boom())
    assert [t.breaker for t in shared_seen] == ["a", "c"]
    assert [t.breaker for t in own_seen] == ["b"]


def test_an_async_or_non_callable_callback_is_refused() -> None:
    """on_transition is called synchronously: an async function or a non-callable raises DefinitionError."""

    async def later(change: BreakerTransition) -> None:
        return None

    with pytest.raises(DefinitionError, match="on_transition"):
        CircuitBreaker("svc", on_transition=later)
    with pytest.raises(DefinitionError, match="on_transition"):
        BreakerRegistry(on_transition="print")  # type: ignore[arg-type]


async def test_history_keeps_only_the_last_changes(clock: FakeClock) -> None:
    """After many open/half-open/close cycles the breaker keeps the last HISTORY changes, newest last."""
    breaker = make(clock, failure_threshold=1, recovery_timeout=1)
    for _ in range(HISTORY):  # three changes each
        await fail_times(breaker, 1)
        await clock.advance(1)
        await breaker.call(ok)
    kept = breaker.transitions
    assert len(kept) == HISTORY
    assert (kept[-1].old, kept[-1].new, kept[-1].at) == (
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
        clock.now(),
    )
    assert len((await breaker.snapshot())["transitions"]) == HISTORY


# -- releasing a probe ---------------------------------------------------------------------------


async def test_release_frees_the_probe_slot_without_a_verdict(clock: FakeClock) -> None:
    """A probe admitted by allow() and released leaves the breaker half-open with its count, and the next
    caller gets the slot at once instead of after recovery_timeout."""
    seen, hook = listen()
    breaker = make(clock, on_transition=hook)
    await fail_times(breaker, 3)
    await clock.advance(60)
    assert await breaker.allow() is None  # the probe
    assert await breaker.allow() == pytest.approx(1)  # its slot is taken: ask again in a moment
    await breaker.release()
    assert (breaker.state, breaker.failure_count) == (CircuitState.HALF_OPEN, 3)
    assert await breaker.allow() is None  # the freed slot, without waiting
    assert await breaker.allow() is not None  # and only one
    assert [t.new for t in seen] == [CircuitState.OPEN, CircuitState.HALF_OPEN]


async def test_release_outside_half_open_changes_nothing(clock: FakeClock) -> None:
    """release() on a closed breaker with failures, or an open one, writes nothing and keeps the count."""
    store = MemoryBreakerStore()
    breaker = CircuitBreaker("svc", failure_threshold=3, store=store, clock=clock)
    await fail_times(breaker, 2)
    version = store.peek("svc").version
    await breaker.release()
    assert (store.peek("svc").version, breaker.failure_count) == (version, 2)
    await fail_times(breaker, 1)
    opened = store.peek("svc")
    await breaker.release()
    assert store.peek("svc") == opened


async def test_a_cancelled_probe_released_by_its_caller_frees_the_slot(clock: FakeClock) -> None:
    """The engine's split: allow() admits a probe, the worker's task is cancelled and its caller releases;
    the next dispatch is admitted at once."""
    breaker = make(clock)
    await fail_times(breaker, 3)
    await clock.advance(60)
    started = asyncio.Event()

    async def guarded_worker() -> None:
        try:
            started.set()
            await asyncio.Event().wait()  # the call hangs until cancelled
        except asyncio.CancelledError:
            await breaker.release()
            raise

    assert await breaker.allow() is None
    task = asyncio.ensure_future(guarded_worker())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await breaker.allow() is None


async def test_a_cancelled_call_frees_its_probe_slot(clock: FakeClock) -> None:
    """A probe made through call() whose task is cancelled frees its slot and counts nothing."""
    breaker = make(clock)
    await fail_times(breaker, 3)
    await clock.advance(60)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(breaker.call(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (breaker.state, breaker.failure_count) == (CircuitState.HALF_OPEN, 3)
    assert await breaker.allow() is None


# -- only probes decide a half-open breaker ---------------------------------------------------------


async def half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    await fail_times(breaker, 3)
    await clock.advance(60)


async def test_admit_tells_a_probe_from_a_call_admitted_while_closed(clock: FakeClock) -> None:
    """admit(): closed admits without a probe, half-open admits a probe, a busy slot refuses with a wait."""
    breaker = make(clock)
    assert await breaker.admit() == Decision(retry_after=None, probe=False)
    await half_open(breaker, clock)
    assert await breaker.admit() == Decision(retry_after=None, probe=True)
    refused = await breaker.admit()
    assert refused.probe is False and refused.retry_after == pytest.approx(1)


@pytest.mark.parametrize(
    "report",
    [
        lambda b: b.record_success(probe=False),
        lambda b: b.record_failure(Boom("late"), probe=False),
        lambda b: b.record_failure(KeyError("uncounted"), probe=False),
        lambda b: b.release(probe=False),
    ],
    ids=["success", "failure", "uncounted", "release"],
)
async def test_an_outcome_reported_as_no_probe_leaves_a_half_open_breaker_as_it_is(
    clock: FakeClock, report: Callable[[CircuitBreaker], Any]
) -> None:
    """A call admitted while closed reporting (probe=False) after the breaker half-opened changes nothing."""
    store = MemoryBreakerStore()
    breaker = make(clock, store=store)
    assert (await breaker.admit()).probe is False  # the late call
    await half_open(breaker, clock)
    assert (await breaker.admit()).probe is True  # the real probe
    before = store.peek("payment_service")
    await report(breaker)
    assert store.peek("payment_service") == before
    assert await breaker.allow() is not None  # the probe's slot is still taken


async def test_outcomes_reported_as_probes_decide_a_half_open_breaker(clock: FakeClock) -> None:
    """probe=True: a release frees the slot, a failure re-opens, a success closes."""
    breaker = make(clock)
    await half_open(breaker, clock)
    assert (await breaker.admit()).probe is True
    await breaker.release(probe=True)
    assert (await breaker.admit()).probe is True  # the freed slot
    await breaker.record_failure(Boom("still down"), probe=True)
    assert breaker.state is CircuitState.OPEN
    await clock.advance(60)
    assert (await breaker.admit()).probe is True
    await breaker.record_success(probe=True)
    assert (breaker.state, breaker.failure_count) == (CircuitState.CLOSED, 0)


async def test_an_outcome_reported_as_no_probe_counts_while_closed(clock: FakeClock) -> None:
    """probe=False changes nothing only in half-open: while closed its failures count and success resets."""
    breaker = make(clock)
    for _ in range(2):
        await breaker.record_failure(Boom("down"), probe=False)
    assert breaker.failure_count == 2
    await breaker.record_success(probe=False)
    assert breaker.failure_count == 0
    for _ in range(3):
        await breaker.record_failure(None, probe=False)
    assert breaker.state is CircuitState.OPEN


async def test_a_slow_call_admitted_while_closed_does_not_close_a_half_open_breaker(clock: FakeClock) -> None:
    """call() knows its admission: a call started while closed that succeeds during half-open is no probe."""
    breaker = make(clock)
    finish = asyncio.Event()

    async def slow() -> str:
        await finish.wait()
        return "late"

    late = asyncio.ensure_future(breaker.call(slow))
    await asyncio.sleep(0)
    await half_open(breaker, clock)
    assert (await breaker.admit()).probe is True
    finish.set()
    assert await late == "late"
    assert (breaker.state, breaker.failure_count) == (CircuitState.HALF_OPEN, 3)
    assert await breaker.allow() is not None  # the probe still holds the only slot


# -- bookkeeping never changes a call's outcome ------------------------------------------------------

T = TypeVar("T")


class FailingWrites:
    """A shared store (async only) that reads fine and fails every write while ``failing`` is set."""

    def __init__(self) -> None:
        self.inner = MemoryBreakerStore()
        self.failing = False

    async def load(self, name: str) -> BreakerState:
        return self.inner.peek(name)

    async def apply(self, name: str, fn: Callable[[BreakerState], tuple[BreakerState, T]]) -> T:
        if self.failing:
            raise StoreError(f"could not write circuit breaker {name!r}: connection reset")
        return self.inner.apply_now(name, fn)


async def test_a_store_failing_to_record_the_outcome_leaves_the_calls_result_and_exception(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """call(): recording fails with StoreError; the result is returned, Boom raised, each failure logged."""
    store = FailingWrites()
    breaker = make(clock, store=store, window=60)  # failure-rate mode: every outcome is written
    store.failing = True
    with caplog.at_level("ERROR", logger="multiagents.breaker"):
        assert await breaker.call(ok) == "ok"
        with pytest.raises(Boom):
            await breaker.call(fail)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [StoreError, StoreError]
    store.failing = False
    assert await breaker.call(ok) == "ok"
    assert (await breaker.snapshot())["calls"] == 1


async def test_the_primitives_still_raise_a_store_failure_to_their_caller(clock: FakeClock) -> None:
    """record_success/record_failure/release raise StoreError: their caller decides what it means."""
    store = FailingWrites()
    breaker = make(clock, store=store, window=60)
    store.failing = True
    with pytest.raises(StoreError):
        await breaker.record_success()
    with pytest.raises(StoreError):
        await breaker.record_failure(Boom("down"))
    with pytest.raises(StoreError):
        await breaker.release(probe=True)


# -- what @breaker guards ---------------------------------------------------------------------------


async def test_a_sync_guarded_function_returning_a_coroutine_counts_nothing(clock: FakeClock) -> None:
    """A sync function handing back a coroutine: DefinitionError, the coroutine closed, no failure counted,
    and a probe's slot given back."""
    made: list[Any] = []

    async def work() -> str:
        return "never run"

    breaker = make(clock, failure_threshold=1)

    @breaker
    def wrong() -> Any:
        made.append(work())
        return made[-1]

    for _ in range(2):
        with pytest.raises(DefinitionError, match="returned an awaitable"):
            wrong()
    assert [inspect.getcoroutinestate(c) for c in made] == [inspect.CORO_CLOSED] * 2
    assert (breaker.state, breaker.failure_count) == (CircuitState.CLOSED, 0)


async def test_a_sync_guarded_probe_returning_a_coroutine_frees_its_slot(clock: FakeClock) -> None:
    """The probe of a half-open breaker whose sync function returns an awaitable leaves the slot free."""
    breaker = make(clock, failure_threshold=1)

    @breaker
    def flaky(fail_now: bool) -> Any:
        if fail_now:
            raise Boom("down")
        return asyncio.sleep(0)

    with pytest.raises(Boom):
        flaky(True)
    await clock.advance(60)
    with pytest.raises(DefinitionError):
        flaky(False)
    assert (breaker.state, breaker.failure_count) == (CircuitState.HALF_OPEN, 1)
    assert (await breaker.admit()).probe is True  # the slot is free again


async def test_a_sync_callable_object_stays_sync_and_an_async_one_becomes_async(clock: FakeClock) -> None:
    """@breaker on objects: a sync __call__ is guarded as sync, an async __call__ as a coroutine function."""

    class Sync:
        def __call__(self, x: int) -> int:
            return x + 1

    class Async:
        async def __call__(self, x: int) -> int:
            return x + 2

    breaker = make(clock)
    sync_guarded: Any = breaker(Sync())
    async_guarded: Any = breaker(Async())
    assert not inspect.iscoroutinefunction(sync_guarded) and sync_guarded(1) == 2
    assert inspect.iscoroutinefunction(async_guarded) and await async_guarded(1) == 3


@pytest.mark.parametrize(
    ("wait", "shown"), [(3600, "3600s"), (1.5, "1.5s"), (0.01, "0.01s"), (59.5, "59.5s")]
)
async def test_a_refusal_message_shows_the_wait_readably(clock: FakeClock, wait: float, shown: str) -> None:
    """The refusal's message says "retry in 3600s", never "3.6e+03s"."""
    breaker = make(clock, failure_threshold=1, recovery_timeout=wait)
    with pytest.raises(Boom):
        await breaker.call(fail)
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await breaker.call(ok)
    assert str(caught.value).endswith(f"retry in {shown}")


# -- the seed's usage ----------------------------------------------------------------------------


async def test_seed_circuit_breaker_worker_runs_unchanged(clock: FakeClock) -> None:
    """The seed's section 4 worker: call() succeeds, and once open returns its circuit_breaker_open dict."""
    service_circuit_breakers = {
        "payment_service": CircuitBreaker(failure_threshold=3, recovery_timeout=30, clock=clock),
    }
    healthy = {"payment_service": False}

    async def call_external_service(service_name: str, request_data: dict[str, Any]) -> dict[str, Any]:
        if not healthy[service_name]:
            raise ConnectionError(f"{service_name} unreachable")
        return {"echo": request_data}

    async def circuit_breaker_protected_worker(context: dict[str, Any]) -> dict[str, Any]:
        service_name = context["service_name"]
        circuit_breaker = service_circuit_breakers.get(service_name, CircuitBreaker())
        try:
            response = await circuit_breaker.call(
                call_external_service, service_name, context["request_data"]
            )
            return {"response": response, "circuit_breaker_state": circuit_breaker.state.value}
        except CircuitBreakerOpenError:
            return {"status": "circuit_breaker_open", "retry_after": circuit_breaker.recovery_timeout}
        except Exception as e:
            return {
                "status": "service_call_failed",
                "error": str(e),
                "failure_count": circuit_breaker.failure_count,
            }

    ctx = {"service_name": "payment_service", "request_data": {"x": 1}}
    outs = [await circuit_breaker_protected_worker(ctx) for _ in range(4)]
    assert [o.get("failure_count") for o in outs[:3]] == [1, 2, 3]
    assert outs[3] == {"status": "circuit_breaker_open", "retry_after": 30.0}
    healthy["payment_service"] = True
    await clock.advance(30)
    assert await circuit_breaker_protected_worker(ctx) == {
        "response": {"echo": {"x": 1}},
        "circuit_breaker_state": "closed",
    }


def test_importing_the_package_does_not_import_redis() -> None:
    """`import multiagents` and `import multiagents.resilience` leave redis out of sys.modules."""
    code = "import sys, multiagents, multiagents.resilience; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the pure transition -------------------------------------------------------------------------

NOW = 1_700_000_000.0
events = st.sampled_from(list(Event))
configs = st.builds(
    CircuitBreakerConfig,
    failure_threshold=st.integers(1, 5),
    recovery_timeout=st.sampled_from([1.0, 10.0, 60.0]),
    half_open_max_calls=st.integers(1, 4),
    window=st.sampled_from([None, None, 10.0, 60.0]),
    min_calls=st.integers(1, 6),
    failure_rate=st.sampled_from([0.2, 0.5, 1.0]),
)


@settings(deadline=None, max_examples=300)
@given(st.lists(st.booleans(), max_size=40), st.integers(1, 6))
def test_consecutive_mode_opens_exactly_at_the_threshold(outcomes: list[bool], threshold: int) -> None:
    """Fed successes (True) and failures, a closed breaker opens exactly when the trailing run of failures
    reaches the threshold, and never before."""
    config = CircuitBreakerConfig(failure_threshold=threshold)
    state, run = BreakerState(), 0
    for ok_ in outcomes:
        state, _ = transition(state, Event.SUCCESS if ok_ else Event.FAILURE, config, NOW)
        run = 0 if ok_ else run + 1
        if run == threshold:
            assert state.state is CircuitState.OPEN
            break
        assert (state.state, state.failure_count) == (CircuitState.CLOSED, run)


@settings(deadline=None, max_examples=300)
@given(configs, st.lists(st.tuples(events, st.sampled_from([0.0, 0.5, 3.0, 30.0, 61.0])), max_size=60))
def test_invariants_hold_under_any_event_sequence(config: CircuitBreakerConfig, steps: list[Any]) -> None:
    """Whatever happens: probes in flight stay within [0, max]; open has opened_at; closed has no probes;
    a refusal names a positive retry_after equal to the time until half-open (when open); the state
    survives a JSON round trip."""
    state, now = BreakerState(), NOW
    for event, dt in steps:
        now += dt
        before = state
        state, decision = transition(state, event, config, now)
        assert 0 <= state.half_open_in_flight <= config.half_open_max_calls
        assert len(state.window) <= WINDOW_BUCKETS + 1  # old buckets are dropped, not kept forever
        if state.state is CircuitState.OPEN:
            assert state.opened_at is not None and state.half_open_in_flight == 0
        if state.state is CircuitState.CLOSED:
            assert state.half_open_in_flight == 0 and state.opened_at is None
        if decision.retry_after is not None:
            assert event is Event.ACQUIRE and decision.retry_after > 0 and state is before
            if before.state is CircuitState.OPEN:
                assert before.opened_at is not None
                assert decision.retry_after == pytest.approx(before.opened_at + config.recovery_seconds - now)
        if event is not Event.ACQUIRE:
            assert decision.retry_after is None
        assert BreakerState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


@settings(deadline=None, max_examples=300)
@given(
    configs,
    st.lists(st.tuples(events, st.sampled_from([0.0, 0.5, 3.0, 30.0, 61.0])), max_size=40),
    st.sampled_from([Event.LATE_SUCCESS, Event.LATE_FAILURE, Event.LATE_RELEASE]),
)
def test_late_outcomes_change_only_a_closed_breaker_and_as_their_plain_events_do(
    config: CircuitBreakerConfig, steps: list[Any], late: Event
) -> None:
    """Wherever a sequence leads, a LATE_* outcome leaves an open or half-open state as it is, and on a
    closed one does exactly what SUCCESS, FAILURE or RELEASE does."""
    plain = {Event.LATE_SUCCESS: Event.SUCCESS, Event.LATE_FAILURE: Event.FAILURE}.get(late, Event.RELEASE)
    assert plain.as_late() is late and late.late and not plain.late
    state, now = BreakerState(), NOW
    for event, dt in steps:
        now += dt
        state, _ = transition(state, event, config, now)
        after, decision = transition(state, late, config, now)
        assert decision.retry_after is None
        if state.state is CircuitState.CLOSED:
            assert after == transition(state, plain, config, now)[0]
        else:
            assert after is state


@settings(deadline=None, max_examples=300)
@given(
    st.integers(1, 4),
    st.lists(
        st.tuples(
            st.sampled_from(["acquire", "finish"]),
            st.integers(0, 9),
            st.sampled_from([Event.SUCCESS, Event.FAILURE, Event.RELEASE]),
        )
    ),
)
def test_never_more_probes_in_flight_than_allowed(max_calls: int, ops: list[Any]) -> None:
    """From the moment recovery ends, callers asking and finishing in any order never have more than
    half_open_max_calls probes running at once, and any admission beyond closed is a probe."""
    config = CircuitBreakerConfig(failure_threshold=1, half_open_max_calls=max_calls, recovery_timeout=10)
    state, _ = transition(BreakerState(), Event.FAILURE, config, NOW)
    now = NOW + 10  # time stands still from here: no probe outlives its lease
    probes: list[int] = []
    for op, pick, outcome in ops:
        if op == "acquire":
            state, decision = transition(state, Event.ACQUIRE, config, now)
            if decision.retry_after is None and decision.probe:
                probes.append(pick)
            elif decision.retry_after is None:
                assert state.state is CircuitState.CLOSED
        elif probes:
            probes.pop(pick % len(probes))
            state, _ = transition(state, outcome, config, now)
            if state.state is not CircuitState.HALF_OPEN:
                probes.clear()  # the verdict is in; outstanding probes no longer hold slots
        if state.state is CircuitState.HALF_OPEN:
            assert len(probes) <= max_calls
            assert state.half_open_in_flight == len(probes)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.booleans(), max_size=60), st.integers(1, 10), st.sampled_from([0.1, 0.5, 0.9, 1.0]))
def test_window_mode_never_opens_below_min_calls_or_rate(
    outcomes: list[bool], min_calls: int, rate: float
) -> None:
    """In one window, the breaker opens on the first failure at which calls >= min_calls and
    failures/calls >= failure_rate, and not before."""
    config = CircuitBreakerConfig(window=60, min_calls=min_calls, failure_rate=rate)
    state = BreakerState()
    failures = 0
    for calls, ok_ in enumerate(outcomes, 1):
        state, _ = transition(state, Event.SUCCESS if ok_ else Event.FAILURE, config, NOW)
        failures += not ok_
        should_open = not ok_ and calls >= min_calls and failures / calls >= rate
        assert (state.state is CircuitState.OPEN) == should_open
        if should_open:
            break


def test_window_keeps_a_bounded_number_of_buckets() -> None:
    """A long run of calls in failure-rate mode stores at most one bucket more than the window holds."""
    config = CircuitBreakerConfig(window=10, min_calls=5)
    state = BreakerState()
    for i in range(100):
        state, _ = transition(state, Event.SUCCESS, config, NOW + 0.7 * i)
    assert len(state.window) <= WINDOW_BUCKETS + 1
    assert sum(b[1] for b in state.window) <= 16  # about 10 s of calls, 0.7 s apart
