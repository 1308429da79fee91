"""The circuit breaker object: guards calls with the decisions of :mod:`multiagents.resilience.transitions`.

Callers either wrap the call (``await breaker.call(fn, ...)``, ``@breaker``) or, when admitting and running
happen in different places (the engine admits, a worker runs), use the primitives: ``admit()`` (or
``allow()``) before the call, then exactly one of ``record_success``, ``record_failure`` or ``release`` (the
call was cancelled). Pass the admission's ``Decision.probe`` on as the outcome's ``probe=``: only probes
decide a half-open breaker, and an outcome reported without it (``probe=None``) is taken for a probe's
whenever the breaker is half-open, so a slow call admitted while closed could re-open or close it.

Sync functions can be guarded (``@breaker`` keeps them sync) only with the in-memory store. A store that
fails when a call asks to go raises :class:`~multiagents.errors.StoreError` from ``call``/``admit``/``allow``
rather than guessing; one that fails when ``call`` records the outcome is logged with the traceback, and the
call's own result or exception stands (the primitives raise it: their caller decides).

Each state change an operation of this object makes goes to its ``on_transition`` callback and into
``breaker.transitions`` (the last few, also in ``snapshot()``); see
:mod:`multiagents.resilience.notifications`.

Cost: a closed breaker in consecutive mode whose failure count is 0 decides without writing anything, so
``call`` around an in-memory breaker costs about a microsecond (``bench/breaker.py``); only state changes
(failures, opening, probes, and every outcome in failure-rate mode) go through the store's atomic
``apply``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from multiagents.clock import Clock, SystemClock
from multiagents.errors import CircuitBreakerOpenError, DefinitionError
from multiagents.policy import Duration
from multiagents.resilience.notifications import BreakerTransition, TransitionHook, TransitionLog, check_hook
from multiagents.resilience.retry import is_async_callable
from multiagents.resilience.stores import BreakerStore, MemoryBreakerStore
from multiagents.resilience.transitions import (
    ADMIT,
    INITIAL,
    BreakerState,
    CircuitBreakerConfig,
    CircuitState,
    Decision,
    Event,
    transition,
    window_counts,
)

__all__ = ["CircuitBreaker"]

log = logging.getLogger("multiagents.breaker")

P = ParamSpec("P")
R = TypeVar("R")

Outcome = tuple[BreakerState, BreakerState, Decision]  # (before, after, decision)


class CircuitBreaker:
    """Guards calls to one named service; use ``await breaker.call(fn, ...)`` or ``@breaker``.

    ``state`` and ``failure_count`` are the values last seen (fresh for the memory store); ``snapshot()``
    reads the store. Give a ``store`` shared by processes (Redis) to share the breaker between them, and
    ``on_transition`` to hear of the state changes this object makes (see the module docstring).
    """

    def __init__(
        self,
        name: str | None = None,
        failure_threshold: int = 5,
        recovery_timeout: Duration = 60.0,
        expected_exception: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        half_open_max_calls: int = 1,
        window: Duration | None = None,
        min_calls: int = 10,
        failure_rate: float = 0.5,
        slow_call_threshold: Duration | None = None,
        store: BreakerStore | None = None,
        clock: Clock | None = None,
        *,
        on_transition: TransitionHook | None = None,
    ) -> None:
        config = CircuitBreakerConfig(
            failure_threshold, recovery_timeout, expected_exception, half_open_max_calls,
            window, min_calls, failure_rate, slow_call_threshold,
        )  # fmt: skip
        self._setup(name, config, store, clock, on_transition)

    @classmethod
    def from_config(
        cls,
        name: str | None,
        config: CircuitBreakerConfig,
        *,
        store: BreakerStore | None = None,
        clock: Clock | None = None,
        on_transition: TransitionHook | None = None,
    ) -> CircuitBreaker:
        breaker = cls.__new__(cls)
        breaker._setup(name, config, store, clock, on_transition)
        return breaker

    def _setup(
        self,
        name: str | None,
        config: CircuitBreakerConfig,
        store: BreakerStore | None,
        clock: Clock | None,
        on_transition: TransitionHook | None,
    ) -> None:
        if name is None:  # the seed's CircuitBreaker() has no name; give it one of its own
            name = f"breaker-{uuid.uuid4().hex[:12]}"
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError(f"a circuit breaker needs a non-empty name, got {name!r}")
        if not isinstance(config, CircuitBreakerConfig):
            raise DefinitionError(f"circuit breaker {name!r}: config must be a CircuitBreakerConfig")
        self.name = name
        self.config = config
        self._store_given = store is not None
        self._clock_given = clock is not None
        self._log = TransitionLog(check_hook(on_transition, f"circuit breaker {name!r}"))
        self._cached = INITIAL
        self._admitted = 0  # admissions by allow() whose outcome has not been reported yet
        self._bind(store or MemoryBreakerStore(), clock or SystemClock())

    def _bind(self, store: BreakerStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._memory = store if isinstance(store, MemoryBreakerStore) else None
        # Successes need no bookkeeping in consecutive mode unless they may be slow.
        self._quiet_success = self.config.window_seconds is None and self.config.slow_call_seconds is None

    def _adopt(
        self, store: BreakerStore | None, clock: Clock | None, on_transition: TransitionHook | None = None
    ) -> None:
        """Take a registry's store, clock and callback for whatever this breaker was not given itself."""
        self._bind(
            store if store is not None and not self._store_given else self._store,
            clock if clock is not None and not self._clock_given else self._clock,
        )
        if self._log.hook is None:
            self._log.hook = on_transition

    # -- the seed's attributes ---------------------------------------------------------------------
    @property
    def state(self) -> CircuitState:
        return self._known().state

    @property
    def failure_count(self) -> int:
        return self._known().failure_count

    @property
    def failure_threshold(self) -> int:
        return self.config.failure_threshold

    @property
    def recovery_timeout(self) -> float:
        return self.config.recovery_seconds

    @property
    def expected_exception(self) -> type[BaseException] | tuple[type[BaseException], ...]:
        return self.config.expected_exception

    @property
    def store(self) -> BreakerStore:
        return self._store

    @property
    def transitions(self) -> list[BreakerTransition]:
        """The last state changes this object made, oldest first (a copy)."""
        return self._log.recent()

    def _known(self) -> BreakerState:
        return self._memory.peek(self.name) if self._memory is not None else self._cached

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state.value}>"

    # -- primitives ---------------------------------------------------------------------------------
    def _fn(self, event: Event, now: float) -> Callable[[BreakerState], tuple[BreakerState, Outcome]]:
        config = self.config

        def step(state: BreakerState) -> tuple[BreakerState, Outcome]:
            new, decision = transition(state, event, config, now)
            return new, (state, new, decision)

        return step

    def _step_now(self, memory: MemoryBreakerStore, event: Event) -> Decision:
        now = self._clock.now()
        before, after, decision = memory.apply_now(self.name, self._fn(event, now))
        if before.state is not after.state:
            # Outside the store's lock: the callback may use the breaker.
            self._log.record(self.name, before, after, self.config, now)
        return decision

    async def _step(self, event: Event) -> Decision:
        if self._memory is not None:
            return self._step_now(self._memory, event)
        now = self._clock.now()
        # ``before`` is the state the store's write was decided on, so a change another process made
        # meanwhile is not reported here as this one's.
        before, after, decision = await self._store.apply(self.name, self._fn(event, now))
        self._cached = after
        if before.state is not after.state:
            self._log.record(self.name, before, after, self.config, now)
        return decision

    async def _acquire(self) -> Decision:
        memory = self._memory
        if memory is not None:
            if memory.peek(self.name).state is CircuitState.CLOSED:
                return ADMIT
            return self._step_now(memory, Event.ACQUIRE)
        state = self._cached = await self._store.load(self.name)  # fresh: the one read per call
        if state.state is CircuitState.CLOSED:
            return ADMIT
        new, decision = transition(state, Event.ACQUIRE, self.config, self._clock.now())
        if new is state:
            return decision  # refused without writing
        return await self._step(Event.ACQUIRE)

    async def admit(self) -> Decision:
        """Whether a call may go now: ``retry_after`` is None if it may, else the seconds until it may.

        ``probe`` is True when the call took a half-open probe slot; report the call's outcome with it
        (``record_success(probe=...)``, ``record_failure(probe=...)``, ``release(probe=...)``) so that only
        probes decide a half-open breaker.
        """
        decision = await self._acquire()
        if decision.retry_after is None and self._memory is None:
            self._admitted += 1
        return decision

    async def allow(self) -> float | None:
        """None if a call may go now (in half-open it takes a probe slot), else seconds until it may.

        ``admit()`` also tells whether the call is a probe, which its outcome should be reported with.
        """
        return (await self.admit()).retry_after

    async def _refresh(self, *, load: bool = True) -> None:
        """Before deciding on an outcome reported without its admission, make the state last seen fresh.

        A call admitted by this object's ``admit()`` is decided on the state that admission read (or a
        later one). An outcome that no admission here accounts for (this process only records, another
        admits) reads the store first: its cached state may be arbitrarily old.
        """
        if self._memory is not None:
            return
        if self._admitted > 0:
            self._admitted -= 1
        elif load:
            self._cached = await self._store.load(self.name)

    def _success_event(self, duration: float, probe: bool | None) -> Event | None:
        """The event a success amounts to; None when it changes nothing that is known."""
        slow = self.config.slow_call_seconds
        if slow is not None and duration > slow:
            event = Event.FAILURE
        else:
            known = self._known()
            if (
                self.config.window_seconds is None
                and known.state is CircuitState.CLOSED
                and known.failure_count == 0
            ):
                return None
            event = Event.SUCCESS
        return event.as_late() if probe is False else event

    def _failure_event(self, exc: BaseException | None, probe: bool | None) -> Event | None:
        if exc is None or isinstance(exc, self.config.expected_exception):
            return Event.LATE_FAILURE if probe is False else Event.FAILURE
        if probe is None:  # the outcome arrives without the admission: infer from the state last seen
            probe = self._known().state is CircuitState.HALF_OPEN
        return Event.RELEASE if probe else None

    async def record_success(self, duration: float = 0.0, *, probe: bool | None = None) -> None:
        """Report a call that returned; ``duration`` (seconds) matters with ``slow_call_threshold``.

        ``probe`` is the admission's ``Decision.probe``; None (not known) takes the call for a probe
        whenever the breaker is half-open.
        """
        await self._refresh()
        event = self._success_event(duration, probe)
        if event is not None:
            await self._step(event)

    async def record_failure(
        self, exc: BaseException | None, duration: float = 0.0, *, probe: bool | None = None
    ) -> None:
        """Report a call that raised ``exc`` (None: failed without an exception); others do not count.

        ``probe`` as for ``record_success``; an uncounted exception of a probe frees its slot.
        """
        await self._refresh()
        event = self._failure_event(exc, probe)
        if event is not None:
            await self._step(event)

    async def release(self, *, probe: bool | None = None) -> None:
        """Report a call that ended without a verdict (cancelled, say): free its probe slot, count nothing.

        For a call admitted by ``admit()`` that will never report success or failure, so that a half-open
        breaker does not wait out ``recovery_timeout`` for it. ``probe`` is the admission's
        ``Decision.probe``: False changes nothing (the call held no slot); None infers it from the state
        last seen, as for an uncounted exception. Outside half-open nothing changes.
        """
        if probe is False:
            await self._refresh(load=False)
            return
        await self._refresh()
        if probe or self._known().state is CircuitState.HALF_OPEN:
            await self._step(Event.RELEASE)

    def _refusal(self, retry_after: float) -> CircuitBreakerOpenError:
        return CircuitBreakerOpenError(
            f"circuit breaker {self.name!r} is {self.state.value}; retry in {_seconds(retry_after)}",
            breaker=self.name,
            retry_after=retry_after,
        )

    async def _record(self, event: Event | None) -> None:
        """Record a guarded call's outcome; a store failing here must not replace the call's own result."""
        if event is None:
            return
        try:
            await self._step(event)
        except Exception:  # any store's error: the call itself is over and its outcome stands
            log.exception("circuit breaker %r: could not record a call's outcome (%s)", self.name, event)

    def _record_now(self, memory: MemoryBreakerStore, event: Event | None) -> None:
        if event is None:
            return
        try:
            self._step_now(memory, event)
        except Exception:  # as in _record
            log.exception("circuit breaker %r: could not record a call's outcome (%s)", self.name, event)

    # -- guarding calls -----------------------------------------------------------------------------
    async def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (sync or async) unless the breaker refuses; exceptions propagate unchanged.

        The outcome is recorded as the probe's or not, as the admission decided; a store failing to record
        it is logged, and ``fn``'s result or exception stands.
        """
        decision = await self._acquire()
        if decision.retry_after is not None:
            raise self._refusal(decision.retry_after)
        timed = self.config.slow_call_seconds is not None
        started = self._clock.now() if timed else 0.0
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            await self._record(self._failure_event(exc, decision.probe))
            raise
        if self._quiet_success and self._memory is not None:
            known = self._memory.peek(self.name)
            if known.state is CircuitState.CLOSED and known.failure_count == 0:
                return result  # the hot path: nothing to record
        await self._record(self._success_event(self._clock.now() - started if timed else 0.0, decision.probe))
        return result

    def _sync_store(self) -> MemoryBreakerStore:
        if self._memory is None:
            raise DefinitionError(
                f"circuit breaker {self.name!r}: a sync function can only be guarded with the in-memory "
                f"store; make it async to use {type(self._store).__name__}"
            )
        return self._memory

    def _call_sync(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        memory = self._sync_store()
        decision = ADMIT
        if memory.peek(self.name).state is not CircuitState.CLOSED:
            decision = self._step_now(memory, Event.ACQUIRE)
        if decision.retry_after is not None:
            raise self._refusal(decision.retry_after)
        started = self._clock.now()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record_now(memory, self._failure_event(exc, decision.probe))
            raise
        if inspect.isawaitable(result):
            # A mistake in the code, not a failure of the service: count nothing, free a probe slot.
            self._record_now(memory, Event.RELEASE if decision.probe else None)
            close = getattr(result, "close", None)
            if callable(close):
                close()  # never awaited: close it so that it does not warn later
            raise DefinitionError(
                f"circuit breaker {self.name!r} guards {fn!r} as a sync function but it returned an "
                "awaitable; decorate the async function itself"
            )
        self._record_now(memory, self._success_event(self._clock.now() - started, decision.probe))
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function so that every call goes through the breaker; sync stays sync.

        An object whose ``__call__`` is a coroutine function is guarded as async, as ``@retry`` does.
        """
        if is_async_callable(fn):

            @functools.wraps(fn)
            async def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call(fn, *args, **kwargs)

            return guarded
        if self._store_given:
            self._sync_store()  # a store given up front that cannot serve sync calls: say so now
        breaker = self

        @functools.wraps(fn)
        def guarded_sync(*args: P.args, **kwargs: P.kwargs) -> Any:
            return breaker._call_sync(fn, args, kwargs)

        return guarded_sync

    async def snapshot(self) -> dict[str, Any]:
        """The state as stored now, for status pages: what ``allow()`` would answer, window counts."""
        state = await self._store.load(self.name)
        self._cached = state
        now = self._clock.now()
        _, decision = transition(state, Event.ACQUIRE, self.config, now)  # what-if: not stored
        calls, failures = window_counts(state, self.config, now)
        return {
            "name": self.name,
            "state": state.state,
            "failure_count": state.failure_count,
            "opened_at": state.opened_at,
            "retry_after": decision.retry_after,
            "half_open_in_flight": state.half_open_in_flight,
            "calls": calls,
            "failures": failures,
            "window": self.config.window_seconds,
            "transitions": [change.to_dict() for change in self._log.recent()],
        }


def _seconds(value: float) -> str:
    """A wait for a message: "3600s", "1.5s", "0.01s" (never "3.6e+03s")."""
    text = f"{value:.3g}"
    if "e" in text:
        text = f"{value:.0f}" if value >= 1 else f"{value:.3f}"
    return f"{text}s"
