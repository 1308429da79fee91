"""How a circuit breaker decides: its options, its state, and the pure :func:`transition`.

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
that ends with an exception the breaker does not count, or is cancelled, frees its slot. A probe that never
reports (its process died) holds its slot for at most ``recovery_timeout``, so a breaker cannot stay
half-open forever; the price is that a probe slower than that may see a second probe start beside it.

Only probes decide a half-open breaker. The outcome of a call admitted while the breaker was closed (a
``LATE_*`` event, when the caller knows the call was no probe) counts only if the breaker is closed when it
arrives: a slow call let through before the breaker opened neither re-opens, nor closes, nor frees a probe
slot of a half-open breaker. An outcome whose caller does not know whether it was a probe (``SUCCESS``,
``FAILURE``, ``RELEASE``) is taken for a probe's while the breaker is half-open.

Counted failures are exceptions that are instances of ``expected_exception``, and successes slower than
``slow_call_threshold``. Other exceptions pass through unchanged and do not count. Outcomes that arrive
while the breaker is open (calls let through before it opened) change nothing.

:func:`transition` holds every decision and does no I/O and reads no clock (``now`` is passed in), so it is
tested directly; stores run it inside their atomic read-modify-write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from multiagents.errors import DefinitionError
from multiagents.policy import Duration, seconds

__all__ = [
    "ADMIT",
    "INITIAL",
    "PROBE",
    "WINDOW_BUCKETS",
    "BreakerState",
    "CircuitBreakerConfig",
    "CircuitState",
    "Decision",
    "Event",
    "transition",
    "window_counts",
]

WINDOW_BUCKETS = 10


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Event(StrEnum):
    """What happened to a breaker; the input of :func:`transition`."""

    ACQUIRE = "acquire"  # a call asks to go
    # Outcomes of probes, or of calls not known to be otherwise:
    SUCCESS = "success"  # a call succeeded (and was not slow)
    FAILURE = "failure"  # a counted failure: an expected exception, or a slow success
    RELEASE = "release"  # a probe ended without a verdict: an uncounted exception, or cancelled
    # Outcomes of calls known to be no probe (admitted while closed); they count only while closed:
    LATE_SUCCESS = "late_success"
    LATE_FAILURE = "late_failure"
    LATE_RELEASE = "late_release"  # changes nothing: such a call holds no slot

    @property
    def late(self) -> bool:
        """Whether this is the outcome of a call known to be no probe."""
        return self in _LATE

    def as_late(self) -> Event:
        """The same outcome, of a call known to be no probe."""
        return _AS_LATE.get(self, self)


_LATE = frozenset({Event.LATE_SUCCESS, Event.LATE_FAILURE, Event.LATE_RELEASE})
_AS_LATE = {
    Event.SUCCESS: Event.LATE_SUCCESS,
    Event.FAILURE: Event.LATE_FAILURE,
    Event.RELEASE: Event.LATE_RELEASE,
}


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
        if event.late:
            return state, ADMIT  # a call let through before the breaker opened: only probes decide
        if event is Event.SUCCESS:
            return BreakerState(version=state.version), ADMIT
        if event is Event.FAILURE:
            return _open(state, now, state.failure_count + 1), ADMIT
        if state.half_open_in_flight == 0:
            return state, ADMIT
        return replace(state, half_open_in_flight=state.half_open_in_flight - 1), ADMIT
    if state.state is CircuitState.OPEN or event in (Event.RELEASE, Event.LATE_RELEASE):
        return state, ADMIT  # a late outcome of a call let through before the breaker opened
    failed = event in (Event.FAILURE, Event.LATE_FAILURE)
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
        # A probe usually answers long before its lease ends: ask again soon, not after a full timeout.
        return state, Decision(retry_after=min(lease_end - now, max(recovery / 10, 0.01), 1.0))
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
