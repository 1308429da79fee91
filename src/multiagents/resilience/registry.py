"""The breakers of one runtime, by name: the engine asks it before dispatching, workers before reporting.

A breaker given to the registry without a store, a clock or an ``on_transition`` callback takes the
registry's; a name nobody configured gets a breaker with the registry's defaults the first time it is asked
for, so a step may name a breaker without configuring it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from multiagents.clock import Clock, SystemClock
from multiagents.errors import DefinitionError
from multiagents.resilience.circuit import CircuitBreaker
from multiagents.resilience.notifications import TransitionHook, check_hook
from multiagents.resilience.stores import BreakerStore, MemoryBreakerStore
from multiagents.resilience.transitions import CircuitBreakerConfig

__all__ = ["BreakerRegistry"]

_DEFAULTS = CircuitBreakerConfig()


class BreakerRegistry:
    """One breaker per name. A breaker given without a store, clock or callback takes the registry's."""

    def __init__(
        self,
        breakers: Iterable[CircuitBreaker] = (),
        *,
        store: BreakerStore | None = None,
        clock: Clock | None = None,
        defaults: CircuitBreakerConfig = _DEFAULTS,
        on_transition: TransitionHook | None = None,
    ) -> None:
        if not isinstance(defaults, CircuitBreakerConfig):
            raise DefinitionError(f"defaults must be a CircuitBreakerConfig, got {defaults!r}")
        self._store: BreakerStore = store if store is not None else MemoryBreakerStore()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.defaults = defaults
        self._on_transition = check_hook(on_transition, "BreakerRegistry")
        self._breakers: dict[str, CircuitBreaker] = {}
        for breaker in breakers:
            if not isinstance(breaker, CircuitBreaker):
                raise DefinitionError(f"BreakerRegistry takes CircuitBreaker objects, got {breaker!r}")
            if breaker.name in self._breakers:
                raise DefinitionError(f"two circuit breakers are named {breaker.name!r}")
            breaker._adopt(store, clock, self._on_transition)
            self._breakers[breaker.name] = breaker

    def get(self, name: str) -> CircuitBreaker:
        """The breaker named ``name``; an unconfigured name gets one with the defaults, made once."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker.from_config(
                name, self.defaults, store=self._store, clock=self._clock, on_transition=self._on_transition
            )
            self._breakers[name] = breaker
        return breaker

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def names(self) -> list[str]:
        return list(self._breakers)

    async def snapshots(self) -> list[dict[str, Any]]:
        return [await b.snapshot() for b in self._breakers.values()]
