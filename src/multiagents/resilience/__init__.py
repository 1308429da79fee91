"""Resilience around calls to other services: circuit breakers (memory or Redis-backed state) and
in-process retries.

The Redis-backed store lives in :mod:`multiagents.resilience.redis_breaker` and is imported from there,
so that importing this package never needs the redis client.
"""

from multiagents.resilience.breaker import (
    BreakerRegistry,
    BreakerState,
    BreakerStore,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    Decision,
    Event,
    MemoryBreakerStore,
    transition,
)
from multiagents.resilience.retry import RetryEvent, retry, retry_on_failure, retrying

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
    # state and its stores
    "BreakerState",
    "BreakerStore",
    "MemoryBreakerStore",
    # the pure core
    "Decision",
    "Event",
    "transition",
]
