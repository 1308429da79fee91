"""What the state machine consumes (events) and what it asks the shell to do (effects)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from multiagents.messages import Command, Result
from multiagents.state import SagaState

__all__ = [
    "Cancel",
    "Dispatch",
    "Effect",
    "Event",
    "Finish",
    "RecordError",
    "Resume",
    "RetryCompensations",
    "Start",
    "Tick",
    "lease_grace",
]


# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Begin a new instance."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed: fire the leases and retries that are due."""


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str = "cancelled by request"


@dataclass(frozen=True, slots=True)
class RetryCompensations:
    """Try the failed compensations of a ``compensation_failed`` workflow again."""


@dataclass(frozen=True, slots=True)
class Resume:
    """The process restarted: attempts that were in flight died with it; dispatch them again."""


Event: TypeAlias = "Start | Result | Tick | Cancel | RetryCompensations | Resume"


# ---- effects --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dispatch:
    command: Command


@dataclass(frozen=True, slots=True)
class Finish:
    state: SagaState


@dataclass(frozen=True, slots=True)
class RecordError:
    """A failed attempt for the error tracker, stored in the same transaction as the transition."""

    record: dict[str, Any]


Effect: TypeAlias = "Dispatch | Finish | RecordError"


def lease_grace(timeout: float) -> float:
    """How long past an attempt's deadline the orchestrator waits before declaring it lost.

    The worker enforces the timeout itself and reports it; the lease only has to catch workers
    that died or messages that were lost, so it allows for the result's trip back.
    """
    return min(max(1.0, timeout * 0.1), 30.0)
