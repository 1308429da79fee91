"""The exception tree and the classification of worker failures.

Every exception the framework raises derives from :class:`MultiAgentsError`::

    MultiAgentsError
    ├── DefinitionError            a worker, step or workflow is declared wrongly (raised at build time)
    ├── ValidationError            input does not satisfy a schema (also a ``ValueError``)
    ├── WorkerExecutionError       a worker gives up for good: permanent, never retried
    │   └── StepFailed             a business failure ("payment declined"), compensates
    ├── RetryableError             a transient failure; may carry ``retry_after``
    ├── CircuitBreakerOpenError    a guarded service is known to be down; carries ``retry_after``
    ├── StepTimeoutError           an attempt ran past its step's timeout
    ├── SerializationError         a payload is not plain JSON or is too large (also a ``ValueError``)
    ├── WorkflowError              something about one workflow instance
    │   ├── WorkflowNotFound       no instance with that transaction id
    │   ├── UnknownWorkflow        no definition registered under that workflow id
    │   └── DefinitionMismatch     an instance was started under a different definition
    ├── StoreError                 a store backend failed (the cause is chained)
    │   ├── ConcurrencyConflict    compare-and-set on an instance's version lost
    │   └── StoreLocked            another Runtime owns the store file
    └── BusError                   a bus backend failed

Workers raise whatever they like; :func:`classify` maps any exception to an :class:`ErrorInfo`, the
JSON-safe record that crosses the bus and that the state machine decides on.
"""

from __future__ import annotations

import traceback as _tb
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "BusError",
    "CircuitBreakerOpenError",
    "ConcurrencyConflict",
    "DefinitionError",
    "DefinitionMismatch",
    "ErrorCategory",
    "ErrorInfo",
    "MultiAgentsError",
    "RetryableError",
    "SerializationError",
    "StepFailed",
    "StepTimeoutError",
    "StoreError",
    "StoreLocked",
    "UnknownWorkflow",
    "ValidationError",
    "WorkerExecutionError",
    "WorkflowError",
    "WorkflowNotFound",
    "classify",
]

TRACEBACK_LIMIT = 4000


class MultiAgentsError(Exception):
    """Root of every exception the framework raises."""


class DefinitionError(MultiAgentsError):
    """A worker, step or workflow is declared wrongly; raised before anything runs."""


class ValidationError(MultiAgentsError, ValueError):
    """Input does not satisfy its schema. ``errors`` lists every problem found, not just the first."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        if self.errors:
            message = message + ":\n  - " + "\n  - ".join(self.errors)
        super().__init__(message)


class WorkerExecutionError(MultiAgentsError):
    """Raised by a worker that has failed for good. Never retried; the saga compensates."""


class StepFailed(WorkerExecutionError):
    """A business failure: the work was refused (declined card, no stock). Compensates, no retry."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})


class RetryableError(MultiAgentsError):
    """A transient failure. ``retry_after`` (seconds) is the least the next attempt must wait."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitBreakerOpenError(MultiAgentsError):
    """The breaker guarding a service is open; the call was not made."""

    def __init__(self, message: str, *, breaker: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.breaker = breaker
        self.retry_after = retry_after


class StepTimeoutError(MultiAgentsError, TimeoutError):
    """An attempt ran past its step's timeout."""


class SerializationError(MultiAgentsError, ValueError):
    """A payload is not plain JSON (or holds NaN/Infinity), or exceeds the size limit."""


class WorkflowError(MultiAgentsError):
    """Something about one workflow instance."""

    def __init__(self, message: str, transaction_id: str | None = None) -> None:
        super().__init__(message)
        self.transaction_id = transaction_id


class WorkflowNotFound(WorkflowError, KeyError):
    """No workflow instance has that transaction id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownWorkflow(WorkflowError, KeyError):
    """No workflow definition is registered under that id."""

    def __str__(self) -> str:
        return str(self.args[0])


class DefinitionMismatch(WorkflowError):
    """An unfinished instance was started under a definition that has since changed."""


class StoreError(MultiAgentsError):
    """A store backend failed; the backend's own exception is chained as ``__cause__``."""


class ConcurrencyConflict(StoreError):
    """Another writer saved the instance first (its version moved on)."""


class StoreLocked(StoreError):
    """The store file is owned by another running Runtime."""


class BusError(MultiAgentsError):
    """A bus backend failed; the backend's own exception is chained as ``__cause__``."""


class ErrorCategory(StrEnum):
    """How the engine treats a failure; see the outcome table in docs/architecture.md."""

    VALIDATION = "validation"
    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    CIRCUIT_OPEN = "circuit_open"
    PERMANENT = "permanent"
    UNEXPECTED = "unexpected"
    SERIALIZATION = "serialization"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failure as data: what crosses the bus, is stored, and is shown to people."""

    category: ErrorCategory
    message: str
    type: str = ""
    retryable: bool = False
    retry_after: float | None = None
    types: tuple[str, ...] = field(default=())
    traceback: str = ""
    severity: str | None = None  # set by an exception's ``severity`` attribute; else the tracker decides

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category.value,
            "message": self.message,
            "type": self.type,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "types": list(self.types),
            "traceback": self.traceback,
            "severity": self.severity,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(
            category=ErrorCategory(data["category"]),
            message=data.get("message", ""),
            type=data.get("type", ""),
            retryable=bool(data.get("retryable", False)),
            retry_after=data.get("retry_after"),
            types=tuple(data.get("types", ())),
            traceback=data.get("traceback", ""),
            severity=data.get("severity"),
        )

    def matches(self, names: frozenset[str]) -> bool:
        """True when the failing exception is, or subclasses, one of the named types."""
        return any(t in names for t in self.types)


def type_name(tp: type) -> str:
    return tp.__name__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"


def _retry_after(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _category(exc: BaseException, retry_after: float | None) -> ErrorCategory:
    # Order matters: the specific framework types first, then the builtin families.
    if isinstance(exc, SerializationError):
        return ErrorCategory.SERIALIZATION
    if isinstance(exc, CircuitBreakerOpenError):
        return ErrorCategory.CIRCUIT_OPEN
    if isinstance(exc, StepTimeoutError):
        return ErrorCategory.TIMEOUT
    if isinstance(exc, WorkerExecutionError):
        return ErrorCategory.PERMANENT
    if isinstance(exc, ValueError):  # includes pydantic's ValidationError and ours
        return ErrorCategory.VALIDATION
    if (
        isinstance(exc, ConnectionError | TimeoutError)
        or getattr(exc, "retryable", False) is True
        or retry_after is not None
    ):
        return ErrorCategory.TRANSIENT
    return ErrorCategory.UNEXPECTED


_RETRYABLE = {ErrorCategory.TRANSIENT, ErrorCategory.TIMEOUT, ErrorCategory.CIRCUIT_OPEN}


def classify(exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
    """Map any exception to the record the engine decides on (category, retryability, delay)."""
    retry_after = _retry_after(exc)
    category = _category(exc, retry_after)
    tb = ""
    if with_traceback and exc.__traceback__ is not None:
        tb = "".join(_tb.format_exception(exc))[-TRACEBACK_LIMIT:]
    message = str(exc) or type(exc).__name__
    return ErrorInfo(
        category=category,
        message=message,
        type=type(exc).__name__,
        retryable=category in _RETRYABLE,
        retry_after=retry_after,
        types=tuple(type_name(t) for t in type(exc).__mro__ if t not in (object, BaseException)),
        traceback=tb,
        severity=severity if isinstance(severity := getattr(exc, "severity", None), str) else None,
    )
