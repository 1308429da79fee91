"""Resilience around calls to other services: circuit breakers (memory or Redis-backed state) and
in-process retries.

The Redis-backed store lives in :mod:`multiagents.resilience.redis_breaker` and is imported from there,
so that importing this package never needs the redis client.
"""

from multiagents.resilience.circuit import CircuitBreaker
from multiagents.resilience.notifications import BreakerTransition
from multiagents.resilience.registry import BreakerRegistry
from multiagents.resilience.retry import RetryEvent, retry, retry_on_failure, retrying
from multiagents.resilience.stores import BreakerStore, MemoryBreakerStore
from multiagents.resilience.transitions import (
    BreakerState,
    CircuitBreakerConfig,
    CircuitState,
    Decision,
    Event,
    transition,
)

__all__ = [
    # in-process retries (the same RetryPolicy as durable step retries)
    "RetryEvent",
    "retry",
    "retry_on_failure",
    "retrying",
    # circuit breakers
    "BreakerRegistry",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitState",
    "BreakerTransition",
    # state and its stores
    "BreakerState",
    "BreakerStore",
    "MemoryBreakerStore",
    # the pure core
    "Decision",
    "Event",
    "transition",
]
