"""Circuit breakers: stop calling a service that is known to be down, and find out when it is back.

The pieces, one module each (all importable from here, and the public ones from
:mod:`multiagents.resilience`):

- :mod:`~multiagents.resilience.transitions`: :class:`CircuitBreakerConfig`, :class:`BreakerState` and the
  pure :func:`transition` that makes every decision; its docstring tells how a breaker behaves.
- :mod:`~multiagents.resilience.stores`: the :class:`BreakerStore` protocol and :class:`MemoryBreakerStore`
  (``multiagents.resilience.redis_breaker.RedisBreakerStore`` shares breakers between processes).
- :mod:`~multiagents.resilience.circuit`: :class:`CircuitBreaker`, which guards calls.
- :mod:`~multiagents.resilience.notifications`: :class:`BreakerTransition`, what a breaker tells its
  ``on_transition`` callback, and the recent history it keeps.
- :mod:`~multiagents.resilience.registry`: :class:`BreakerRegistry`, one breaker per name for a runtime.
"""

from multiagents.resilience.circuit import CircuitBreaker
from multiagents.resilience.notifications import BreakerTransition, TransitionHook
from multiagents.resilience.registry import BreakerRegistry
from multiagents.resilience.stores import BreakerStore, MemoryBreakerStore
from multiagents.resilience.transitions import (
    ADMIT,
    INITIAL,
    PROBE,
    WINDOW_BUCKETS,
    BreakerState,
    Bucket,
    CircuitBreakerConfig,
    CircuitState,
    Decision,
    Event,
    transition,
    window_counts,
)

__all__ = [
    "ADMIT",
    "INITIAL",
    "PROBE",
    "WINDOW_BUCKETS",
    "BreakerRegistry",
    "BreakerState",
    "BreakerStore",
    "BreakerTransition",
    "Bucket",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitState",
    "Decision",
    "Event",
    "MemoryBreakerStore",
    "TransitionHook",
    "transition",
    "window_counts",
]
