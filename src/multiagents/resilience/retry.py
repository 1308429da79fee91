"""In-process retries that decide and wait exactly as durable step retries do.

A durable step retry is a timer in the store; an in-process retry is a loop around one call inside a
worker (or anywhere else). Both take the same :class:`~multiagents.policy.RetryPolicy`, both ask
``policy.should_retry(classify(exc), attempt)`` whether to go again, and both wait
``compute_backoff(policy, attempt, rng, retry_after)`` seconds — never less than the exception's own
``retry_after``. When the answer is no, the last exception is raised unchanged.

Three spellings, which decide and wait alike::

    @retry(RetryPolicy(max_attempts=5))          # async or sync functions
    async def fetch(url): ...

    async for attempt in retrying(policy):       # a block, like tenacity's AsyncRetrying
        with attempt:
            await call()

    @retry_on_failure(max_retries=3, backoff_factor=1.5)   # the seed's decorator, unchanged
    async def call_external_service(name, data): ...

Inside a worker, all these attempts happen within one attempt of the step: the step's timeout covers
them together, and the engine sees one outcome, which it may in turn retry durably.

Time: async waits go through the injected :class:`~multiagents.clock.Clock` (``SystemClock`` by
default), so tests pass a ``FakeClock`` and never sleep for real. Sync functions are retried
synchronously: they wait with the clock's ``sleep_sync(seconds)`` when it has one, else with
``time.sleep`` — so do not call a retried sync function on the event loop's thread (sync workers run
in a thread, where blocking is fine).

Why a hand-written loop and not tenacity or stamina: the parts a retry library supplies — the backoff
formula, the retry predicate, the exception classification — already exist here as the pure
``compute_backoff``, ``RetryPolicy.should_retry`` and ``classify`` that the durable engine uses.
Wrapping them in tenacity would mean translating our policy into its wait/stop/retry objects (a second
policy vocabulary to keep in step with the first) and reading ``retry_after`` back out of its retry
state; stamina brings its own backoff and a process-global testing switch instead of an injected clock.
What remains is a loop of about forty lines, which is cheaper to own than a dependency.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from multiagents.clock import Clock, SystemClock
from multiagents.errors import DefinitionError, ErrorInfo, WorkerExecutionError, classify
from multiagents.policy import DEFAULT_RETRY_POLICY, RetryPolicy, compute_backoff

__all__ = ["Attempt", "RetryEvent", "Retrying", "retry", "retry_on_failure", "retrying"]

log = logging.getLogger("multiagents.retry")

P = ParamSpec("P")
R = TypeVar("R")

PolicyLike = RetryPolicy | Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Passed to ``on_retry`` after attempt ``attempt`` failed and before waiting ``delay`` seconds."""

    name: str
    attempt: int
    delay: float
    error: ErrorInfo
    exception: BaseException


OnRetry = Callable[[RetryEvent], object]


@dataclass(frozen=True, slots=True)
class _Engine:
    """The decision after a failed attempt: wait this long, or give up by raising."""

    policy: RetryPolicy
    clock: Clock
    rng: random.Random
    on_retry: OnRetry | None = None
    name: str = ""
    # Replaces the policy's choice of what to retry (retry_on_failure's list); rejected ones raise at once.
    accepts: Callable[[BaseException], bool] | None = None
    # Replaces the last exception once attempts run out on a retryable error (the seed's wrapping).
    on_exhausted: Callable[[BaseException], BaseException] | None = None

    def delay_after(self, exc: Exception, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``; raises when there is to be none."""
        info = classify(exc, with_traceback=False)
        if self.accepts is not None:
            # retry_on_failure's list decides alone, as in the seed: listed types are retried.
            retryable = self.accepts(exc) and attempt < self.policy.max_attempts
        else:
            retryable = self.policy.should_retry(info, attempt)
        if retryable:
            delay = compute_backoff(self.policy, attempt, self.rng, info.retry_after)
            log.info(
                "%s: attempt %d failed (%s: %s); retrying in %.3gs",
                self.name or "retried block",
                attempt,
                type(exc).__name__,
                exc,
                delay,
            )
            if self.on_retry is not None:
                try:
                    self.on_retry(RetryEvent(self.name, attempt, delay, info, exc))
                except Exception:  # a listener's bug must not end the retries it listens to
                    log.exception(
                        "%s: on_retry raised after attempt %d", self.name or "retried block", attempt
                    )
            return delay
        # should_retry with attempt 0 asks only whether this kind of error is retried at all.
        kind_retried = self.accepts(exc) if self.accepts is not None else self.policy.should_retry(info, 0)
        exhausted = kind_retried and attempt >= self.policy.max_attempts
        if exhausted and self.on_exhausted is not None:
            raise self.on_exhausted(exc) from exc
        raise exc

    def sleep_sync(self, seconds: float) -> None:
        sleep = getattr(self.clock, "sleep_sync", None)
        if callable(sleep):
            sleep(seconds)
        else:
            time.sleep(seconds)


class Attempt:
    """One try of a retried block; use it as ``with attempt:`` so a failure is caught and judged.

    Only ``Exception`` is caught: cancellation, ``KeyboardInterrupt`` and ``SystemExit`` pass through.
    """

    __slots__ = ("_exception", "number")

    def __init__(self, number: int) -> None:
        self.number = number
        self._exception: Exception | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if isinstance(exc, Exception):
            self._exception = exc
            return True
        return False

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"


class _Attempts:
    """The iterator state of one loop over a :class:`Retrying`."""

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine
        self._current: Attempt | None = None

    def _delay(self) -> float | None:
        """Seconds before the next attempt, or None when the last one succeeded; raises on giving up.

        Raised from ``__next__``/``__anext__``, a StopIteration or StopAsyncIteration would end the loop
        as if the block had succeeded, so the block's own is raised as a RuntimeError chained to it.
        """
        current = self._current
        if current is None:
            return 0.0
        exc, current._exception = current._exception, None
        if exc is None:
            return None
        try:
            return self._engine.delay_after(exc, current.number)
        except (StopIteration, StopAsyncIteration) as stop:
            raise RuntimeError(f"the retried block raised {type(stop).__name__}") from stop

    def _advance(self) -> Attempt:
        self._current = Attempt(1 if self._current is None else self._current.number + 1)
        return self._current

    def __aiter__(self) -> _Attempts:
        return self

    async def __anext__(self) -> Attempt:
        first = self._current is None
        delay = self._delay()
        if delay is None:
            raise StopAsyncIteration
        if not first:
            await self._engine.clock.sleep(delay)
        return self._advance()

    def __iter__(self) -> _Attempts:
        return self

    def __next__(self) -> Attempt:
        first = self._current is None
        delay = self._delay()
        if delay is None:
            raise StopIteration
        if not first:
            self._engine.sleep_sync(delay)
        return self._advance()


class Retrying:
    """The attempts of a retried block: ``async for`` (waits on the clock) or plain ``for`` (blocks).

    The loop ends after an attempt that raised nothing; when the policy says no more, the last
    exception is raised from the loop — except a StopIteration or StopAsyncIteration, which would end
    the loop silently there and is raised as a ``RuntimeError`` chained to it (``__cause__``); the
    decorators raise those unchanged. Each ``for`` over the same object starts again at attempt 1.
    """

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine

    def __aiter__(self) -> _Attempts:
        return _Attempts(self._engine)

    def __iter__(self) -> _Attempts:
        return _Attempts(self._engine)


def _engine(
    policy: PolicyLike,
    clock: Clock | None,
    rng: random.Random | None,
    on_retry: OnRetry | None,
    name: str = "",
) -> _Engine:
    given: object = policy
    if callable(given) and not isinstance(given, RetryPolicy | Mapping):
        raise DefinitionError("retry takes a policy, not the function: write @retry() with parentheses")
    coerced = RetryPolicy.coerce(policy, "retry policy")
    return _Engine(
        policy=coerced if coerced is not None else DEFAULT_RETRY_POLICY,
        clock=clock if clock is not None else SystemClock(),
        rng=rng if rng is not None else random.Random(),
        on_retry=on_retry,
        name=name,
    )


def retrying(
    policy: PolicyLike = None,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    on_retry: OnRetry | None = None,
) -> Retrying:
    """Retry a block of code: ``async for attempt in retrying(policy): with attempt: ...``.

    ``attempt.number`` counts from 1. ``policy`` is a :class:`RetryPolicy`, its dict form, or None for
    the default (3 attempts, 1 s then 2 s, 10% jitter).
    """
    return Retrying(_engine(policy, clock, rng, on_retry))


def is_async_callable(func: Callable[..., Any]) -> bool:
    """Whether ``func`` is called as async: a coroutine function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def _decorate(make_engine: Callable[[str], _Engine]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        engine = make_engine(getattr(func, "__qualname__", repr(func)))
        # Plain loops rather than Retrying: delay_after raises the exception that ends the retries, and
        # raised inside an iterator's __next__ a StopIteration from ``func`` would end the loop instead.
        if is_async_callable(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                attempt = 1
                while True:
                    try:
                        return await cast(Awaitable[Any], func(*args, **kwargs))
                    except Exception as exc:
                        delay = engine.delay_after(exc, attempt)
                    await engine.clock.sleep(delay)
                    attempt += 1

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            attempt = 1
            while True:
                try:
                    return func(*args, **kwargs)
                except Exception as exc:
                    delay = engine.delay_after(exc, attempt)
                engine.sleep_sync(delay)
                attempt += 1

        return sync_wrapper

    return decorate


def retry(
    policy: PolicyLike = None,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    on_retry: OnRetry | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry a function in-process when, and as long as, a durable step with ``policy`` would be.

    Async functions wait on ``clock``; sync functions block (see the module docstring). ``rng`` drives
    the jitter; ``on_retry`` is called with a :class:`RetryEvent` before each wait. The policy is
    checked here, at decoration time.
    """
    base = _engine(policy, clock, rng, on_retry)

    def make(name: str) -> _Engine:
        return _Engine(base.policy, base.clock, base.rng, base.on_retry, name)

    return _decorate(make)


def _exception_types(value: object) -> tuple[type[BaseException], ...]:
    items = (value,) if isinstance(value, type) else value
    if not isinstance(items, Iterable) or isinstance(items, str | bytes):
        raise DefinitionError(f"retryable_exceptions takes exception classes, got {value!r}")
    types = tuple(items)
    for tp in types:
        if not (isinstance(tp, type) and issubclass(tp, BaseException)):
            raise DefinitionError(f"retryable_exceptions takes exception classes, got {tp!r}")
    return types


def retry_on_failure(
    max_retries: int = 3,
    backoff_factor: float = 2.0,
    retryable_exceptions: type[BaseException] | Iterable[type[BaseException]] | None = None,
    *,
    clock: Clock | None = None,
    on_retry: OnRetry | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The seed's retry decorator, kept for code written against it; new code can use :func:`retry`.

    As in the seed: ``max_retries`` is the number of attempts in all; the wait after the n-th failure
    is ``backoff_factor ** (n - 1)`` seconds (1, 2, 4, ... for 2.0), without jitter or cap; only
    ``retryable_exceptions`` are retried (default, as the seed's: ``ConnectionError``, ``TimeoutError``
    and ``ServiceUnavailableError``, matched by class name since users define it); any other exception,
    even one that carries ``retry_after``, is raised at once,
    unchanged; and when every attempt failed, ``WorkerExecutionError("Operation failed after
    {max_retries} attempts: {last}")`` is raised, chained to the last exception, so a durable step
    does not retry the whole batch again. Unlike the seed, an exception's ``retry_after`` is honoured
    as the least wait, sync functions are supported, and nonsense arguments (``max_retries < 1``,
    ``backoff_factor < 1``) are refused at decoration time instead of misbehaving at call time.
    """
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 1:
        raise DefinitionError(f"retry_on_failure: max_retries must be an int >= 1, got {max_retries!r}")
    if isinstance(backoff_factor, bool) or not isinstance(backoff_factor, int | float) or backoff_factor < 1:
        raise DefinitionError(f"retry_on_failure: backoff_factor must be >= 1, got {backoff_factor!r}")
    explicit = retryable_exceptions is not None
    types = _exception_types(retryable_exceptions) if explicit else (ConnectionError, TimeoutError)

    def accepts(exc: BaseException) -> bool:
        if isinstance(exc, types):
            return True
        # The seed's default list names ServiceUnavailableError, a class its users define themselves:
        # without a list, a class of that name (or a subclass of one) is retried as the seed would.
        return not explicit and any(c.__name__ == "ServiceUnavailableError" for c in type(exc).__mro__)

    try:
        longest = float(backoff_factor) ** (max_retries - 1)
    except OverflowError:
        longest = sys.float_info.max
    policy = RetryPolicy(
        max_attempts=max_retries,
        initial_interval=1,
        backoff_coefficient=backoff_factor,
        max_interval=longest,  # the seed never caps its delay
        jitter=0,
        retry_on=types,
    )

    def exhausted(exc: BaseException) -> BaseException:
        return WorkerExecutionError(f"Operation failed after {max_retries} attempts: {exc}")

    def make(name: str) -> _Engine:
        return _Engine(
            policy,
            clock if clock is not None else SystemClock(),
            random.Random(0),  # unused: jitter is 0
            on_retry,
            name,
            accepts=accepts,
            on_exhausted=exhausted,
        )

    return _decorate(make)
