"""Where circuit breaker states live: the :class:`BreakerStore` protocol and the in-process store.

A store only keeps states and applies a transition to one of them atomically; what the transition decides is
:func:`~multiagents.resilience.transitions.transition`'s business. Breakers shared by processes use
``multiagents.resilience.redis_breaker.RedisBreakerStore``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol, TypeVar

from multiagents.resilience.transitions import INITIAL, BreakerState

__all__ = ["BreakerStore", "MemoryBreakerStore"]

T = TypeVar("T")


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
