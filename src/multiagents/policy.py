"""Retry policies and the pure backoff function shared by durable step retries and in-process retries."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from multiagents.errors import DefinitionError, ErrorInfo, type_name

__all__ = [
    "DEFAULT_COMPENSATION_POLICY",
    "DEFAULT_RETRY_POLICY",
    "RetryPolicy",
    "compute_backoff",
    "seconds",
]

Duration = float | int | timedelta


def seconds(value: Duration | None, what: str, *, allow_none: bool = False) -> float | None:
    """Normalise a duration given as seconds or ``timedelta`` once, at the edge."""
    if value is None:
        if allow_none:
            return None
        raise DefinitionError(f"{what} is required")
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DefinitionError(f"{what} must be seconds (a number) or a timedelta, got {value!r}")
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise DefinitionError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def _type_names(value: Iterable[type[BaseException] | str], what: str) -> frozenset[str]:
    names = set()
    for item in value:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, type) and issubclass(item, BaseException):
            names.add(type_name(item))
        else:
            raise DefinitionError(f"{what} takes exception types or their names, got {item!r}")
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failed attempt is tried again.

    ``max_attempts`` counts every attempt, the first included (1 means never retry). The delay before
    attempt ``n+1`` is ``initial_interval * backoff_coefficient ** (n-1)``, capped at ``max_interval``,
    spread by ``jitter`` (a fraction: 0.1 means +/-10%), and never less than an error's ``retry_after``.
    ``retry_on`` makes further exception types retryable; ``non_retryable`` makes types final even if
    they would otherwise be retried. Both accept classes or qualified names and match subclasses.
    """

    max_attempts: int = 3
    initial_interval: Duration = 1.0
    backoff_coefficient: float = 2.0
    max_interval: Duration = 60.0
    jitter: float = 0.1
    retry_on: Iterable[type[BaseException] | str] = ()
    non_retryable: Iterable[type[BaseException] | str] = ()
    _retry_on: frozenset[str] = field(init=False, repr=False, compare=False)
    _non_retryable: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise DefinitionError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise DefinitionError(f"max_attempts must be >= 1, got {self.max_attempts}")
        initial = seconds(self.initial_interval, "initial_interval")
        maximum = seconds(self.max_interval, "max_interval")
        assert initial is not None and maximum is not None
        if maximum < initial:
            raise DefinitionError(f"max_interval ({maximum}) must be >= initial_interval ({initial})")
        if not isinstance(self.backoff_coefficient, int | float) or self.backoff_coefficient < 1:
            raise DefinitionError(f"backoff_coefficient must be >= 1, got {self.backoff_coefficient!r}")
        if not isinstance(self.jitter, int | float) or not 0 <= self.jitter <= 1:
            raise DefinitionError(f"jitter must be a fraction between 0 and 1, got {self.jitter!r}")
        object.__setattr__(self, "initial_interval", initial)
        object.__setattr__(self, "max_interval", maximum)
        object.__setattr__(self, "backoff_coefficient", float(self.backoff_coefficient))
        object.__setattr__(self, "retry_on", tuple(self.retry_on))
        object.__setattr__(self, "non_retryable", tuple(self.non_retryable))
        object.__setattr__(self, "_retry_on", _type_names(self.retry_on, "retry_on"))
        object.__setattr__(self, "_non_retryable", _type_names(self.non_retryable, "non_retryable"))

    @classmethod
    def coerce(cls, value: RetryPolicy | Mapping[str, Any] | None, what: str) -> RetryPolicy | None:
        """Accept a policy, the old package's dict form, or None."""
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, Mapping):
            try:
                return cls.from_dict(value)
            except DefinitionError as exc:
                raise DefinitionError(f"{what}: {exc}") from None
        raise DefinitionError(f"{what} must be a RetryPolicy or a dict, got {type(value).__name__}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """The old package's dict form (``max_retries``, ``backoff_multiplier``, ...) or our field names."""
        aliases = {
            "max_attempts": "max_attempts",
            "initial_interval": "initial_interval",
            "initial_delay": "initial_interval",
            "delay": "initial_interval",
            "backoff_coefficient": "backoff_coefficient",
            "backoff_multiplier": "backoff_coefficient",
            "backoff_factor": "backoff_coefficient",
            "max_interval": "max_interval",
            "max_delay": "max_interval",
            "jitter": "jitter",
            "retry_on": "retry_on",
            "non_retryable": "non_retryable",
        }
        kwargs: dict[str, Any] = {}
        unknown = []
        for key, value in data.items():
            if key == "max_retries":
                # The old form counts retries after the first attempt.
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise DefinitionError(f"max_retries must be a whole number >= 0, got {value!r}")
                kwargs["max_attempts"] = value + 1
            elif key in aliases:
                kwargs[aliases[key]] = value
            else:
                unknown.append(key)
        if unknown:
            raise DefinitionError(
                f"unknown retry_policy keys {sorted(unknown)}; use {sorted({*aliases, 'max_retries'})}"
            )
        if "jitter" in kwargs and isinstance(kwargs["jitter"], bool):
            kwargs["jitter"] = 0.1 if kwargs["jitter"] else 0.0
        if "max_interval" not in kwargs and "initial_interval" in kwargs:
            # Unset, the cap must not be below a long initial delay the old form asked for.
            initial = seconds(kwargs["initial_interval"], "initial_delay")
            kwargs["max_interval"] = max(60.0, initial or 0.0)
        return cls(**kwargs)

    @property
    def initial_seconds(self) -> float:
        return float(self.initial_interval)  # type: ignore[arg-type]  # normalised in __post_init__

    @property
    def max_seconds(self) -> float:
        return float(self.max_interval)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval,
            "backoff_coefficient": self.backoff_coefficient,
            "max_interval": self.max_interval,
            "jitter": self.jitter,
            "retry_on": sorted(self._retry_on),
            "non_retryable": sorted(self._non_retryable),
        }

    def should_retry(self, error: ErrorInfo, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based), having failed with ``error``, is tried again."""
        if attempt >= self.max_attempts or error.matches(self._non_retryable):
            return False
        return error.retryable or error.matches(self._retry_on)


def compute_backoff(
    policy: RetryPolicy, attempt: int, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one. Pure."""
    base = policy.initial_seconds * policy.backoff_coefficient ** (attempt - 1)
    cap = policy.max_seconds
    delay = min(base, cap)
    if policy.jitter:
        delay *= 1 + policy.jitter * (2 * rng.random() - 1)
        delay = min(delay, cap)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(delay, 0.0)


DEFAULT_RETRY_POLICY = RetryPolicy()
# Compensations undo work already done; giving up leaves a person to clean up, so they try longer.
DEFAULT_COMPENSATION_POLICY = RetryPolicy(
    max_attempts=6, initial_interval=1.0, backoff_coefficient=2.0, max_interval=60.0
)
