"""What a breaker tells about its own state changes: :class:`BreakerTransition` and the log that keeps them.

Each breaker object has a :class:`TransitionLog`. When one of the object's operations changes the state
(closed -> open, open -> half_open, half_open -> closed or open) the change is appended to the log, which
keeps the last ``HISTORY`` of them, and passed to the ``on_transition`` callback, if any. The callback is
called synchronously, in the thread of the operation (a sync guarded function may run in a worker thread),
so it should be quick: hand slow work to a queue. Whatever it raises is logged with the traceback and
swallowed, because a listener's bug must not fail the call it listens to. Changes made by other processes
sharing a store are reported by those processes.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from multiagents.errors import DefinitionError
from multiagents.resilience.transitions import BreakerState, CircuitBreakerConfig, CircuitState

__all__ = ["HISTORY", "BreakerTransition", "TransitionHook", "TransitionLog", "check_hook"]

log = logging.getLogger("multiagents.breaker")

HISTORY = 50  # state changes kept per breaker object


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A state change one breaker object caused: kept in its history and passed to ``on_transition``.

    ``at`` is the breaker's clock time of the change; ``retry_after`` is set only when the change opened the
    breaker, to the seconds until it half-opens.
    """

    breaker: str
    old: CircuitState
    new: CircuitState
    failure_count: int
    at: float
    retry_after: float | None = None

    @classmethod
    def between(
        cls, breaker: str, before: BreakerState, after: BreakerState, config: CircuitBreakerConfig, now: float
    ) -> BreakerTransition | None:
        """The change from ``before`` to ``after`` (one step of ``transition``); None if the state held."""
        if before.state is after.state:
            return None
        retry_after = None
        if after.state is CircuitState.OPEN:
            opened_at = now if after.opened_at is None else after.opened_at
            retry_after = max(0.0, opened_at + config.recovery_seconds - now)
        return cls(breaker, before.state, after.state, after.failure_count, now, retry_after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "breaker": self.breaker,
            "old": self.old,
            "new": self.new,
            "failure_count": self.failure_count,
            "at": self.at,
            "retry_after": self.retry_after,
        }


TransitionHook = Callable[[BreakerTransition], object]


def check_hook(hook: TransitionHook | None, owner: str) -> TransitionHook | None:
    """Refuse, at construction, a callback that cannot be called synchronously inside an operation."""
    if hook is None:
        return None
    if not callable(hook):
        raise DefinitionError(f"{owner}: on_transition must be callable, got {hook!r}")
    if inspect.iscoroutinefunction(hook):
        raise DefinitionError(f"{owner}: on_transition is called synchronously, it must not be async")
    return hook


class TransitionLog:
    """One breaker object's recent state changes and the callback told of each."""

    def __init__(self, hook: TransitionHook | None = None) -> None:
        self.hook = hook
        self._recent: deque[BreakerTransition] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()  # copying a deque while another thread appends would raise

    def recent(self) -> list[BreakerTransition]:
        with self._lock:
            return list(self._recent)

    def record(
        self,
        breaker: str,
        before: BreakerState,
        after: BreakerState,
        config: CircuitBreakerConfig,
        now: float,
    ) -> None:
        change = BreakerTransition.between(breaker, before, after, config, now)
        if change is None:
            return
        with self._lock:
            self._recent.append(change)
        hook = self.hook
        if hook is None:
            return
        try:
            hook(change)
        except Exception:  # see the module docstring: never let the listener break the call
            log.exception(
                "on_transition of circuit breaker %r raised on %s -> %s", breaker, change.old, change.new
            )
