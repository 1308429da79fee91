"""Circuit breakers: stop calling a service that is known to be down, and find out when it is back.

A breaker is ``closed`` while calls go through. It opens in one of two modes:

- consecutive (the default): after ``failure_threshold`` counted failures in a row; a success resets the
  count.
- failure rate (``window`` set): when, over the last ``window`` seconds and with at least ``min_calls``
  calls, ``failures / calls >= failure_rate`` (``failure_threshold`` plays no part). Calls are counted in
  ten buckets, so a sample is forgotten between ``window`` and ``1.1 * window`` after it was taken.

While ``open`` every call is refused with :class:`~multiagents.errors.CircuitBreakerOpenError`, whose
``retry_after`` is the time left until ``opened_at + recovery_timeout``. After that the breaker is
``half_open``: up to ``half_open_max_calls`` probes may be in flight at once, the others are refused. The
first probe to succeed closes the breaker; one that fails re-opens it for a fresh ``recovery_timeout``; one
that ends with an exception the breaker does not count frees its slot. A probe that never reports (its
process died) holds its slot for at most ``recovery_timeout``, so a breaker cannot stay half-open forever;
the price is that a probe slower than that may see a second probe start beside it.

Counted failures are exceptions that are instances of ``expected_exception``, and successes slower than
``slow_call_threshold``. Other exceptions pass through unchanged and do not count. Outcomes that arrive
while the breaker is open (calls let through before it opened) change nothing.

Sync functions can be guarded (``@breaker`` keeps them sync) only with the in-memory store; a store that
fails raises :class:`~multiagents.errors.StoreError` from ``call``/``allow`` rather than guessing.

The decisions live in the pure :func:`transition` (no I/O, no clock: ``now`` is passed in), so they are
tested directly. The state lives in a :class:`BreakerStore`: :class:`MemoryBreakerStore` for one process,
``multiagents.resilience.redis_breaker.RedisBreakerStore`` for breakers shared by processes.

Cost: a closed breaker in consecutive mode whose failure count is 0 decides without writing anything, so
``call`` around an in-memory breaker costs about a microsecond (``bench/breaker.py``); only state changes
(failures, opening, probes, and every outcome in failure-rate mode) go through the store's atomic
``apply``.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from multiagents.clock import Clock, SystemClock
from multiagents.errors import CircuitBreakerOpenError, DefinitionError
from multiagents.policy import Duration, seconds

__all__ = [
    "BreakerRegistry",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitState",
    "Decision",
    "Event",
    "MemoryBreakerStore",
    "transition",
    "window_counts",
]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")

WINDOW_BUCKETS = 10


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Event(StrEnum):
    """What happened to a breaker; the input of :func:`transition`."""

    ACQUIRE = "acquire"  # a call asks to go
    SUCCESS = "success"  # a call succeeded (and was not slow)
    FAILURE = "failure"  # a counted failure: an expected exception, or a slow success
    RELEASE = "release"  # a probe ended with an exception the breaker does not count


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """How a breaker decides; see the module docstring for the two modes. Durations: seconds or timedelta."""

    failure_threshold: int = 5
    recovery_timeout: Duration = 60.0
    expected_exception: type[BaseException] | tuple[type[BaseException], ...] = Exception
    half_open_max_calls: int = 1
    window: Duration | None = None
    min_calls: int = 10
    failure_rate: float = 0.5
    slow_call_threshold: Duration | None = None
    _recovery: float = field(init=False, repr=False, compare=False)
    _window: float | None = field(init=False, repr=False, compare=False)
    _slow: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for what in ("failure_threshold", "half_open_max_calls", "min_calls"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DefinitionError(f"circuit breaker {what} must be an int >= 1, got {value!r}")
        rate = self.failure_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise DefinitionError(f"circuit breaker failure_rate must be in (0, 1], got {rate!r}")
        object.__setattr__(self, "failure_rate", float(rate))
        for what, private, optional in (
            ("recovery_timeout", "_recovery", False),
            ("window", "_window", True),
            ("slow_call_threshold", "_slow", True),
        ):
            value = seconds(getattr(self, what), f"circuit breaker {what}", allow_none=optional)
            if value is not None and value <= 0:
                raise DefinitionError(f"circuit breaker {what} must be > 0, got {getattr(self, what)!r}")
            object.__setattr__(self, what, value)
            object.__setattr__(self, private, value)
        expected: Any = self.expected_exception
        if isinstance(expected, list):  # accepted, kept as a tuple
            expected = tuple(expected)
        types = expected if isinstance(expected, tuple) else (expected,)
        if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
            raise DefinitionError(
                f"circuit breaker expected_exception must be an exception type or a tuple of them, "
                f"got {self.expected_exception!r}"
            )
        object.__setattr__(self, "expected_exception", expected)

    @property
    def recovery_seconds(self) -> float:
        return self._recovery

    @property
    def window_seconds(self) -> float | None:
        return self._window

    @property
    def slow_call_seconds(self) -> float | None:
        return self._slow


Bucket = tuple[float, int, int]  # (bucket start, calls, failures)


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A breaker's whole state: small, immutable, JSON-serialisable. ``version`` is bumped by stores."""

    state: CircuitState = CircuitState.CLOSED
    failure_count: int = 0  # counted failures in a row
    opened_at: float | None = None
    half_open_in_flight: int = 0
    probe_at: float | None = None  # when the latest probe was let through
    window: tuple[Bucket, ...] = ()
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "failure_count": self.failure_count,
            "opened_at": self.opened_at,
            "half_open_in_flight": self.half_open_in_flight,
            "probe_at": self.probe_at,
            "window": [list(b) for b in self.window],
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakerState:
        return cls(
            state=CircuitState(data.get("state", "closed")),
            failure_count=int(data.get("failure_count", 0)),
            opened_at=data.get("opened_at"),
            half_open_in_flight=int(data.get("half_open_in_flight", 0)),
            probe_at=data.get("probe_at"),
            window=tuple((float(s), int(c), int(f)) for s, c, f in data.get("window", ())),
            version=int(data.get("version", 0)),
        )


INITIAL = BreakerState()


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to an event: ``retry_after`` is None when a call may go (always None for outcomes)."""

    retry_after: float | None = None
    probe: bool = False  # the call took a half-open probe slot


ADMIT = Decision()
PROBE = Decision(probe=True)


def transition(
    state: BreakerState, event: Event, config: CircuitBreakerConfig, now: float
) -> tuple[BreakerState, Decision]:
    """The breaker's next state and answer. Pure; returns ``state`` itself when nothing changes."""
    if event is Event.ACQUIRE:
        return _acquire(state, config, now)
    if state.state is CircuitState.HALF_OPEN:
        if event is Event.SUCCESS:
            return BreakerState(version=state.version), ADMIT
        if event is Event.FAILURE:
            return _open(state, now, state.failure_count + 1), ADMIT
        if state.half_open_in_flight == 0:
            return state, ADMIT
        return replace(state, half_open_in_flight=state.half_open_in_flight - 1), ADMIT
    if state.state is CircuitState.OPEN or event is Event.RELEASE:
        return state, ADMIT  # a late outcome of a call let through before the breaker opened
    failed = event is Event.FAILURE
    count = state.failure_count + 1 if failed else 0
    if config.window_seconds is None:
        if count >= config.failure_threshold:
            return _open(state, now, count), ADMIT
        return (state if count == state.failure_count else replace(state, failure_count=count)), ADMIT
    window = _record(state.window, config.window_seconds, now, failed)
    if failed:
        calls, failures = _sums(window, config.window_seconds, now)
        if calls >= config.min_calls and failures / calls >= config.failure_rate:
            return _open(state, now, count), ADMIT
    return replace(state, failure_count=count, window=window), ADMIT


def _acquire(state: BreakerState, config: CircuitBreakerConfig, now: float) -> tuple[BreakerState, Decision]:
    if state.state is CircuitState.CLOSED:
        return state, ADMIT
    recovery = config.recovery_seconds
    if state.state is CircuitState.OPEN:
        ready = (now if state.opened_at is None else state.opened_at) + recovery
        if now < ready:
            return state, Decision(retry_after=ready - now)
        return replace(state, state=CircuitState.HALF_OPEN, half_open_in_flight=1, probe_at=now), PROBE
    if state.half_open_in_flight < config.half_open_max_calls:
        return replace(state, half_open_in_flight=state.half_open_in_flight + 1, probe_at=now), PROBE
    lease_end = (now if state.probe_at is None else state.probe_at) + recovery
    if now < lease_end:
        return state, Decision(retry_after=lease_end - now)
    # The probes in flight have not reported for a whole recovery_timeout: presume them lost.
    return replace(state, half_open_in_flight=1, probe_at=now), PROBE


def _open(state: BreakerState, now: float, count: int) -> BreakerState:
    return BreakerState(CircuitState.OPEN, count, opened_at=now, version=state.version)


def _record(window: tuple[Bucket, ...], span: float, now: float, failed: bool) -> tuple[Bucket, ...]:
    width = span / WINDOW_BUCKETS
    kept = [b for b in window if b[0] + width > now - span]
    start = math.floor(now / width) * width
    if kept and start <= kept[-1][0]:  # same bucket, or a clock slightly behind another process's
        last = kept[-1]
        kept[-1] = (last[0], last[1] + 1, last[2] + failed)
    else:
        kept.append((start, 1, int(failed)))
    return tuple(kept)


def _sums(window: tuple[Bucket, ...], span: float, now: float) -> tuple[int, int]:
    width = span / WINDOW_BUCKETS
    live = [b for b in window if b[0] + width > now - span]
    return sum(b[1] for b in live), sum(b[2] for b in live)


def window_counts(state: BreakerState, config: CircuitBreakerConfig, now: float) -> tuple[int, int]:
    """(calls, failures) still inside the window at ``now``; (0, 0) in consecutive mode."""
    if config.window_seconds is None:
        return 0, 0
    return _sums(state.window, config.window_seconds, now)


class BreakerStore(Protocol):
    """Where breaker states live. ``apply`` is an atomic read-modify-write of one breaker's state."""

    async def load(self, name: str) -> BreakerState: ...

    async def apply(self, name: str, fn: Callable[[BreakerState], tuple[BreakerState, T]]) -> T: ...


class MemoryBreakerStore:
    """Breaker states in a dict, for one process. Thread-safe: sync guarded functions run in threads."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}
        self._lock = threading.Lock()

    def peek(self, name: str) -> BreakerState:
        return self._states.get(name, INITIAL)

    def apply_now(self, name: str, fn: Callable[[BreakerState], tuple[BreakerState, T]]) -> T:
        with self._lock:
            state = self._states.get(name, INITIAL)
            new, result = fn(state)
            if new is not state and new != state:
                self._states[name] = replace(new, version=state.version + 1)
            return result

    async def load(self, name: str) -> BreakerState:
        return self.peek(name)

    async def apply(self, name: str, fn: Callable[[BreakerState], tuple[BreakerState, T]]) -> T:
        return self.apply_now(name, fn)


Outcome = tuple[BreakerState, Decision]


class CircuitBreaker:
    """Guards calls to one named service; use ``await breaker.call(fn, ...)`` or ``@breaker``.

    ``state`` and ``failure_count`` are the values last seen (fresh for the memory store); ``snapshot()``
    reads the store. Give a ``store`` shared by processes (Redis) to share the breaker between them.
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
    ) -> None:
        config = CircuitBreakerConfig(
            failure_threshold, recovery_timeout, expected_exception, half_open_max_calls,
            window, min_calls, failure_rate, slow_call_threshold,
        )  # fmt: skip
        self._setup(name, config, store, clock)

    @classmethod
    def from_config(
        cls,
        name: str | None,
        config: CircuitBreakerConfig,
        *,
        store: BreakerStore | None = None,
        clock: Clock | None = None,
    ) -> CircuitBreaker:
        breaker = cls.__new__(cls)
        breaker._setup(name, config, store, clock)
        return breaker

    def _setup(
        self, name: str | None, config: CircuitBreakerConfig, store: BreakerStore | None, clock: Clock | None
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
        self._cached = INITIAL
        self._admitted = 0  # admissions by allow() whose outcome has not been reported yet
        self._bind(store or MemoryBreakerStore(), clock or SystemClock())

    def _bind(self, store: BreakerStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._memory = store if isinstance(store, MemoryBreakerStore) else None
        # Successes need no bookkeeping in consecutive mode unless they may be slow.
        self._quiet_success = self.config.window_seconds is None and self.config.slow_call_seconds is None

    def _adopt(self, store: BreakerStore | None, clock: Clock | None) -> None:
        """Take a registry's store and clock for whatever this breaker was not given explicitly."""
        self._bind(
            store if store is not None and not self._store_given else self._store,
            clock if clock is not None and not self._clock_given else self._clock,
        )

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

    def _known(self) -> BreakerState:
        return self._memory.peek(self.name) if self._memory is not None else self._cached

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state.value}>"

    # -- primitives ---------------------------------------------------------------------------------
    def _fn(self, event: Event, now: float) -> Callable[[BreakerState], tuple[BreakerState, Outcome]]:
        config = self.config

        def step(state: BreakerState) -> tuple[BreakerState, Outcome]:
            new, decision = transition(state, event, config, now)
            return new, (new, decision)

        return step

    def _step_now(self, memory: MemoryBreakerStore, event: Event) -> Decision:
        _, decision = memory.apply_now(self.name, self._fn(event, self._clock.now()))
        return decision

    async def _step(self, event: Event) -> Decision:
        if self._memory is not None:
            return self._step_now(self._memory, event)
        new, decision = await self._store.apply(self.name, self._fn(event, self._clock.now()))
        self._cached = new
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

    async def allow(self) -> float | None:
        """None if a call may go now (in half-open it takes a probe slot), else seconds until it may."""
        decision = await self._acquire()
        if decision.retry_after is None and self._memory is None:
            self._admitted += 1
        return decision.retry_after

    async def _refresh(self) -> None:
        """Before deciding on an outcome reported without its admission, make the state last seen fresh.

        A call admitted by this object's ``allow()`` is decided on the state that admission read (or a
        later one). An outcome that no admission here accounts for (this process only records, another
        admits) reads the store first: its cached state may be arbitrarily old.
        """
        if self._memory is not None:
            return
        if self._admitted > 0:
            self._admitted -= 1
        else:
            self._cached = await self._store.load(self.name)

    def _success_event(self, duration: float) -> Event | None:
        """The event a success amounts to; None when it changes nothing that is known."""
        slow = self.config.slow_call_seconds
        if slow is not None and duration > slow:
            return Event.FAILURE
        known = self._known()
        if (
            self.config.window_seconds is None
            and known.state is CircuitState.CLOSED
            and known.failure_count == 0
        ):
            return None
        return Event.SUCCESS

    def _failure_event(self, exc: BaseException | None, probe: bool | None) -> Event | None:
        if exc is None or isinstance(exc, self.config.expected_exception):
            return Event.FAILURE
        if probe is None:  # the outcome arrives without the admission: infer from the state last seen
            probe = self._known().state is CircuitState.HALF_OPEN
        return Event.RELEASE if probe else None

    async def record_success(self, duration: float = 0.0) -> None:
        """Report a call that returned; ``duration`` (seconds) matters with ``slow_call_threshold``."""
        await self._refresh()
        event = self._success_event(duration)
        if event is not None:
            await self._step(event)

    async def record_failure(self, exc: BaseException | None, duration: float = 0.0) -> None:
        """Report a call that raised ``exc`` (None: failed without an exception); others do not count."""
        await self._refresh()
        event = self._failure_event(exc, None)
        if event is not None:
            await self._step(event)

    def _refusal(self, retry_after: float) -> CircuitBreakerOpenError:
        return CircuitBreakerOpenError(
            f"circuit breaker {self.name!r} is {self.state.value}; retry in {retry_after:.3g}s",
            breaker=self.name,
            retry_after=retry_after,
        )

    # -- guarding calls -----------------------------------------------------------------------------
    async def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (sync or async) unless the breaker refuses; exceptions propagate unchanged."""
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
            event = self._failure_event(exc, decision.probe)
            if event is not None:
                await self._step(event)
            raise
        if self._quiet_success and self._memory is not None:
            known = self._memory.peek(self.name)
            if known.state is CircuitState.CLOSED and known.failure_count == 0:
                return result  # the hot path: nothing to record
        success = self._success_event(self._clock.now() - started if timed else 0.0)
        if success is not None:
            await self._step(success)
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
            if inspect.isawaitable(result):
                raise DefinitionError(
                    f"circuit breaker {self.name!r} guards {fn!r} as a sync function but it returned an "
                    "awaitable; decorate the async function itself"
                )
        except BaseException as exc:
            event = self._failure_event(exc, decision.probe)
            if event is not None:
                self._step_now(memory, event)
            raise
        success = self._success_event(self._clock.now() - started)
        if success is not None:
            self._step_now(memory, success)
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function so that every call goes through the breaker; sync stays sync."""
        if inspect.iscoroutinefunction(fn):

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
        }


_DEFAULTS = CircuitBreakerConfig()


class BreakerRegistry:
    """One breaker per name. Breakers given without a store or clock take the registry's (if it has them)."""

    def __init__(
        self,
        breakers: Iterable[CircuitBreaker] = (),
        *,
        store: BreakerStore | None = None,
        clock: Clock | None = None,
        defaults: CircuitBreakerConfig = _DEFAULTS,
    ) -> None:
        if not isinstance(defaults, CircuitBreakerConfig):
            raise DefinitionError(f"defaults must be a CircuitBreakerConfig, got {defaults!r}")
        self._store: BreakerStore = store if store is not None else MemoryBreakerStore()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.defaults = defaults
        self._breakers: dict[str, CircuitBreaker] = {}
        for breaker in breakers:
            if not isinstance(breaker, CircuitBreaker):
                raise DefinitionError(f"BreakerRegistry takes CircuitBreaker objects, got {breaker!r}")
            if breaker.name in self._breakers:
                raise DefinitionError(f"two circuit breakers are named {breaker.name!r}")
            breaker._adopt(store, clock)
            self._breakers[breaker.name] = breaker

    def get(self, name: str) -> CircuitBreaker:
        """The breaker named ``name``; an unconfigured name gets one with the defaults, made once."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker.from_config(name, self.defaults, store=self._store, clock=self._clock)
            self._breakers[name] = breaker
        return breaker

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def names(self) -> list[str]:
        return list(self._breakers)

    async def snapshots(self) -> list[dict[str, Any]]:
        return [await b.snapshot() for b in self._breakers.values()]
