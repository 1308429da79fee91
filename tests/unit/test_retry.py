"""In-process retries: the same RetryPolicy, classification and backoff as durable step retries."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import pytest

from multiagents import FakeClock, RetryableError, RetryPolicy, compute_backoff
from multiagents.core.exceptions import WorkerExecutionError
from multiagents.errors import DefinitionError, ErrorCategory, classify
from multiagents.resilience.retry import RetryEvent, retry, retry_on_failure, retrying

NO_JITTER = RetryPolicy(max_attempts=4, initial_interval=1, backoff_coefficient=2, jitter=0)


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


class Flaky(Exception):
    """Not retryable by classification: 'unexpected'."""


class SyncClock:
    """A clock whose sync sleep only moves its own time, for the sync form."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("a sync function must not use the async sleep")

    async def wait_for(self, aw: Any, timeout: float | None) -> Any:
        return await aw

    def sleep_sync(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


async def test_transient_errors_are_retried_with_the_policy_delays(clock: FakeClock) -> None:
    """Three ConnectionErrors then success: four attempts, 1 s, 2 s, 4 s apart on the fake clock."""
    seen: list[float] = []

    @retry(NO_JITTER, clock=clock)
    async def call(x: int) -> int:
        seen.append(clock.now())
        if len(seen) < 4:
            raise ConnectionError("unreachable")
        return x * 2

    assert await clock.run_until(call(21)) == 42
    assert gaps(seen) == [1.0, 2.0, 4.0]


async def test_retry_after_on_the_exception_is_the_least_wait(clock: FakeClock) -> None:
    """A RetryableError with retry_after=120 delays the next attempt by 120 s, not the policy's 1 s."""
    seen: list[float] = []

    @retry(NO_JITTER, clock=clock)
    async def call() -> str:
        seen.append(clock.now())
        if len(seen) == 1:
            raise RetryableError("rate limited", retry_after=120)
        return "ok"

    assert await clock.run_until(call()) == "ok"
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 120


async def test_plain_exception_with_retry_after_is_transient_and_waits(clock: FakeClock) -> None:
    """The seed's RateLimitError (a plain Exception with retry_after) is retried after at least that long."""

    class RateLimitError(Exception):
        def __init__(self, message: str, retry_after: float | None = None) -> None:
            super().__init__(message)
            self.retry_after = retry_after

    seen: list[float] = []

    @retry(NO_JITTER, clock=clock)
    async def call() -> str:
        seen.append(clock.now())
        if len(seen) == 1:
            raise RateLimitError("Rate limit exceeded", retry_after=120)
        return "ok"

    assert await clock.run_until(call()) == "ok"
    assert gaps(seen) == [120.0]


async def test_validation_error_is_raised_at_once_after_one_attempt(clock: FakeClock) -> None:
    """A ValueError is not retryable: one attempt, raised unchanged, no time passes."""
    calls = 0
    error = ValueError("bad input")

    @retry(NO_JITTER, clock=clock)
    async def call() -> None:
        nonlocal calls
        calls += 1
        raise error

    start = clock.now()
    with pytest.raises(ValueError) as info:
        await clock.run_until(call())
    assert info.value is error
    assert calls == 1
    assert clock.now() == start


async def test_exhaustion_reraises_the_last_exception_unchanged(clock: FakeClock) -> None:
    """When attempts run out, the last attempt's exception object is raised, not wrapped or chained."""
    raised: list[ConnectionError] = []

    @retry(RetryPolicy(max_attempts=3, jitter=0), clock=clock)
    async def call() -> None:
        raised.append(ConnectionError(f"failure {len(raised) + 1}"))
        raise raised[-1]

    with pytest.raises(ConnectionError, match="failure 3") as info:
        await clock.run_until(call())
    assert len(raised) == 3
    assert info.value is raised[-1]
    assert info.value.__context__ is None and info.value.__cause__ is None


async def test_retry_on_makes_an_unexpected_error_retryable(clock: FakeClock) -> None:
    """An exception classified unexpected is retried only when the policy's retry_on names it."""
    calls: list[str] = []

    @retry(RetryPolicy(max_attempts=3, jitter=0, retry_on=[Flaky]), clock=clock)
    async def listed() -> str:
        calls.append("listed")
        if len(calls) < 3:
            raise Flaky("again")
        return "done"

    @retry(RetryPolicy(max_attempts=3, jitter=0), clock=clock)
    async def unlisted() -> str:
        calls.append("unlisted")
        raise Flaky("again")

    assert await clock.run_until(listed()) == "done"
    with pytest.raises(Flaky):
        await clock.run_until(unlisted())
    assert calls == ["listed", "listed", "listed", "unlisted"]


async def test_non_retryable_overrides_classification(clock: FakeClock) -> None:
    """A ConnectionError subclass named in non_retryable is raised after one attempt."""

    class DnsFailure(ConnectionError):
        pass

    calls = 0

    @retry(RetryPolicy(max_attempts=5, jitter=0, non_retryable=[DnsFailure]), clock=clock)
    async def call() -> None:
        nonlocal calls
        calls += 1
        raise DnsFailure("no such host")

    with pytest.raises(DnsFailure):
        await clock.run_until(call())
    assert calls == 1


async def test_decisions_match_should_retry_and_delays_match_compute_backoff(clock: FakeClock) -> None:
    """With jitter, each wait is compute_backoff with the same seeded RNG; attempts stop per should_retry."""
    policy = RetryPolicy(max_attempts=4, initial_interval=2, backoff_coefficient=3, jitter=0.5)
    events: list[RetryEvent] = []
    error = TimeoutError("slow")

    @retry(policy, clock=clock, rng=random.Random(5), on_retry=events.append)
    async def call() -> None:
        raise error

    with pytest.raises(TimeoutError):
        await clock.run_until(call())
    expected_rng = random.Random(5)
    assert [e.attempt for e in events] == [1, 2, 3]
    assert [e.delay for e in events] == [compute_backoff(policy, n, expected_rng) for n in (1, 2, 3)]
    assert [policy.should_retry(classify(error), n) for n in (1, 2, 3, 4)] == [True, True, True, False]
    assert all(e.error.category is ErrorCategory.TRANSIENT and e.exception is error for e in events)
    assert events[0].name.endswith("call")


async def test_dict_policy_in_the_old_form_is_accepted(clock: FakeClock) -> None:
    """A dict policy with max_retries=2 (retries after the first) makes three attempts 0.5 s apart."""
    seen: list[float] = []

    @retry({"max_retries": 2, "initial_delay": 0.5, "backoff_multiplier": 1, "jitter": False}, clock=clock)
    async def call() -> None:
        seen.append(clock.now())
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await clock.run_until(call())
    assert gaps(seen) == [0.5, 0.5]


def test_sync_function_is_retried_with_the_clocks_sync_sleep() -> None:
    """A sync function is retried in place, waiting through the clock's sleep_sync; wraps keeps its name."""
    sync_clock = SyncClock()
    seen: list[float] = []

    @retry(NO_JITTER, clock=sync_clock)
    def fetch(key: str) -> str:
        """Fetch a key."""
        seen.append(sync_clock.now())
        if len(seen) < 3:
            raise ConnectionError("down")
        return key.upper()

    assert fetch("k") == "K"
    assert sync_clock.slept == [1.0, 2.0]
    assert gaps(seen) == [1.0, 2.0]
    assert fetch.__name__ == "fetch" and fetch.__doc__ == "Fetch a key."


def test_sync_function_without_a_sync_clock_uses_time_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no sleep_sync on the clock, a sync function waits with time.sleep (patched here)."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    calls = 0

    @retry(RetryPolicy(max_attempts=3, jitter=0))
    def fetch() -> None:
        nonlocal calls
        calls += 1
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        fetch()
    assert calls == 3
    assert slept == [1.0, 2.0]


def test_base_exceptions_pass_through_without_retry() -> None:
    """KeyboardInterrupt is not an Exception: it escapes the first attempt untouched."""
    sync_clock = SyncClock()
    calls = 0

    @retry(NO_JITTER, clock=sync_clock)
    def work() -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        work()
    assert calls == 1 and sync_clock.slept == []


async def test_async_for_form_retries_a_block_until_it_succeeds(clock: FakeClock) -> None:
    """`async for attempt in retrying(policy): with attempt:` runs attempts 1, 2, 3, stopping on success."""
    numbers: list[int] = []
    seen: list[float] = []

    async def scenario() -> None:
        async for attempt in retrying(NO_JITTER, clock=clock):
            with attempt:
                numbers.append(attempt.number)
                seen.append(clock.now())
                if attempt.number < 3:
                    raise ConnectionError("down")

    await clock.run_until(scenario())
    assert numbers == [1, 2, 3]
    assert gaps(seen) == [1.0, 2.0]


async def test_async_for_form_raises_the_last_exception_when_exhausted(clock: FakeClock) -> None:
    """The block form ends, after max_attempts failures, by raising the last attempt's exception."""
    numbers: list[int] = []

    async def scenario() -> None:
        async for attempt in retrying(RetryPolicy(max_attempts=2, jitter=0), clock=clock):
            with attempt:
                numbers.append(attempt.number)
                raise ConnectionError(f"down {attempt.number}")

    with pytest.raises(ConnectionError, match="down 2"):
        await clock.run_until(scenario())
    assert numbers == [1, 2]


def test_sync_for_form_over_the_same_engine() -> None:
    """A plain `for` over retrying() retries synchronously; a ValueError ends it after one attempt."""
    sync_clock = SyncClock()
    numbers: list[int] = []
    with pytest.raises(ValueError, match="invalid"):
        for attempt in retrying(NO_JITTER, clock=sync_clock):
            with attempt:
                numbers.append(attempt.number)
                if attempt.number == 1:
                    raise ConnectionError("down")
                raise ValueError("invalid")
    assert numbers == [1, 2]
    assert sync_clock.slept == [1.0]


def test_retry_without_parentheses_is_refused() -> None:
    """`@retry` used bare gets a DefinitionError that says to add the parentheses."""
    with pytest.raises(DefinitionError, match="parentheses"):

        @retry  # type: ignore[arg-type]
        async def call() -> None: ...


# ---- the seed's retry_on_failure ----------------------------------------------------------------


async def test_seed_retry_on_failure_waits_1_then_1_5_and_wraps_exhaustion(clock: FakeClock) -> None:
    """The seed's @retry_on_failure(max_retries=3, backoff_factor=1.5): 3 attempts, 1.0 s then 1.5 s apart,
    then WorkerExecutionError with the seed's message, which the engine treats as permanent."""
    seen: list[float] = []

    @retry_on_failure(max_retries=3, backoff_factor=1.5, clock=clock)
    async def call_external_service(service_name: str, request_data: dict[str, Any]) -> dict[str, Any]:
        seen.append(clock.now())
        raise ConnectionError(f"Failed to connect to {service_name} (try {len(seen)})")

    with pytest.raises(WorkerExecutionError) as info:
        await clock.run_until(call_external_service("payments", {}))
    assert gaps(seen) == [1.0, 1.5]
    assert str(info.value) == "Operation failed after 3 attempts: Failed to connect to payments (try 3)"
    assert isinstance(info.value.__cause__, ConnectionError)
    assert classify(info.value).category is ErrorCategory.PERMANENT


async def test_seed_retry_on_failure_succeeds_after_transient_failures(clock: FakeClock) -> None:
    """A TimeoutError then success returns the result; the delays are backoff_factor ** attempt (1, 2)."""
    seen: list[float] = []

    @retry_on_failure(clock=clock)
    async def call() -> dict[str, str]:
        seen.append(clock.now())
        if len(seen) < 3:
            raise TimeoutError("Request timed out")
        return {"result": "ok"}

    assert await clock.run_until(call()) == {"result": "ok"}
    assert gaps(seen) == [1.0, 2.0]


async def test_seed_retry_on_failure_reraises_unlisted_exception_at_once(clock: FakeClock) -> None:
    """An exception outside retryable_exceptions is raised unchanged after one attempt, even if transient."""
    calls = 0
    error = ConnectionError("not in the list")

    @retry_on_failure(max_retries=3, retryable_exceptions=(Flaky,), clock=clock)
    async def call() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(ConnectionError) as info:
        await clock.run_until(call())
    assert info.value is error
    assert calls == 1


async def test_seed_retry_on_failure_default_reraises_an_unexpected_error(clock: FakeClock) -> None:
    """With the default list, a RuntimeError (neither listed nor transient) is raised at once, unwrapped."""
    calls = 0

    @retry_on_failure(clock=clock)
    async def call() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        await clock.run_until(call())
    assert calls == 1


async def test_seed_retry_on_failure_retries_listed_types_only(clock: FakeClock) -> None:
    """retryable_exceptions=(Flaky,) retries Flaky, which classification alone would not, until exhausted."""
    calls = 0

    @retry_on_failure(max_retries=2, backoff_factor=2.0, retryable_exceptions=Flaky, clock=clock)
    async def call() -> None:
        nonlocal calls
        calls += 1
        raise Flaky("again")

    with pytest.raises(WorkerExecutionError, match="Operation failed after 2 attempts: again"):
        await clock.run_until(call())
    assert calls == 2


def test_seed_retry_on_failure_is_uncapped_and_accepts_sync_functions() -> None:
    """Ten attempts with factor 2 wait 1, 2, ..., 256 s: uncapped as in the seed (policies cap at 60 s)."""
    sync_clock = SyncClock()

    @retry_on_failure(max_retries=10, clock=sync_clock)
    def call() -> None:
        raise ConnectionError("down")

    with pytest.raises(WorkerExecutionError, match="after 10 attempts"):
        call()
    assert sync_clock.slept == [2.0**n for n in range(9)]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": 0}, {"backoff_factor": 0.5}, {"retryable_exceptions": ("ConnectionError",)}],
)
def test_seed_retry_on_failure_refuses_nonsense_at_decoration(kwargs: dict[str, Any]) -> None:
    """max_retries < 1, backoff_factor < 1 and non-class retryable_exceptions are refused up front."""
    with pytest.raises(DefinitionError):
        retry_on_failure(**kwargs)


async def test_seed_retry_on_failure_default_matches_the_seeds_list(clock: FakeClock) -> None:
    """With no list, the seed's own ServiceUnavailableError is retried (by name) and a rate limit is not."""

    class ServiceUnavailableError(Exception):
        pass

    class RateLimitError(Exception):
        def __init__(self, message: str, retry_after: float | None = None) -> None:
            super().__init__(message)
            self.retry_after = retry_after

    calls: list[str] = []

    @retry_on_failure(max_retries=3, backoff_factor=1.5, clock=clock)
    async def call(exc: Exception) -> None:
        calls.append(type(exc).__name__)
        raise exc

    with pytest.raises(WorkerExecutionError, match="Operation failed after 3 attempts"):
        await clock.run_until(call(ServiceUnavailableError("Service temporarily unavailable")))
    assert calls == ["ServiceUnavailableError"] * 3
    calls.clear()
    with pytest.raises(RateLimitError):
        await clock.run_until(call(RateLimitError("Rate limit exceeded", retry_after=120)))
    assert calls == ["RateLimitError"]


# -- StopIteration and listeners ---------------------------------------------------------------


async def test_retrying_block_raises_a_stop_async_iteration_as_a_chained_runtime_error(
    clock: FakeClock,
) -> None:
    """A block raising StopAsyncIteration does not end `async for` as a success: RuntimeError from it."""
    attempts = 0

    async def empty() -> Any:
        return
        yield

    with pytest.raises(RuntimeError, match="StopAsyncIteration") as caught:
        async for attempt in retrying(NO_JITTER, clock=clock):
            with attempt:
                attempts += 1
                await anext(empty())
    assert isinstance(caught.value.__cause__, StopAsyncIteration)
    assert attempts == 1  # unexpected: not retried


def test_sync_retrying_block_raises_a_stop_iteration_as_a_chained_runtime_error() -> None:
    """A block raising StopIteration does not end a plain `for` as a success: RuntimeError from it."""
    attempts = 0
    with pytest.raises(RuntimeError, match="StopIteration") as caught:
        for attempt in retrying(NO_JITTER, clock=SyncClock()):
            with attempt:
                attempts += 1
                next(iter([]))
    assert isinstance(caught.value.__cause__, StopIteration)
    assert attempts == 1


async def test_a_retried_stop_async_iteration_is_retried_then_raised_unchanged(clock: FakeClock) -> None:
    """With StopAsyncIteration in retry_on the decorator retries it and, exhausted, raises the last one."""
    calls = 0
    policy = RetryPolicy(max_attempts=3, initial_interval=1, jitter=0, retry_on=(StopAsyncIteration,))

    @retry(policy, clock=clock)
    async def first() -> Any:
        nonlocal calls
        calls += 1
        raise StopAsyncIteration(calls)

    with pytest.raises(StopAsyncIteration) as caught:
        await clock.run_until(first())
    assert (calls, caught.value.args) == (3, (3,))


async def test_a_raising_on_retry_is_logged_and_the_retries_go_on(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """on_retry raising KeyError on each retry: logged with its traceback, the call succeeds on try 3."""
    told: list[int] = []

    def listener(event: RetryEvent) -> None:
        told.append(event.attempt)
        raise KeyError("dashboard field missing")

    calls = 0

    @retry(NO_JITTER, clock=clock, on_retry=listener)
    async def fetch() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("down")
        return "ok"

    with caplog.at_level("ERROR", logger="multiagents.retry"):
        assert await clock.run_until(fetch()) == "ok"
    assert told == [1, 2]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and all(r.exc_info and r.exc_info[0] is KeyError for r in errors)
