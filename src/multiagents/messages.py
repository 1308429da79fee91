"""What crosses the bus: commands to workers and their results, as JSON (never pickle)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from multiagents.errors import ErrorInfo, SerializationError

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - only where orjson has no wheel
    _orjson = None

__all__ = ["DEFAULT_MAX_PAYLOAD", "Command", "Kind", "Result", "check_json", "dumps", "loads"]

DEFAULT_MAX_PAYLOAD = 1024 * 1024  # bytes of JSON per context or output


class Kind(StrEnum):
    EXECUTE = "execute"
    COMPENSATE = "compensate"


def _find_bad(value: Any, path: str) -> str | None:
    """Path and reason of the first value that is not plain JSON, or None."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path or 'value'} is {value!r}, which JSON cannot hold"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {key!r} in {path or 'the output'} is a {type(key).__name__}, not a string"
            found = _find_bad(item, f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _find_bad(item, f"{path}[{i}]")
            if found:
                return found
        return None
    return f"{path or 'value'} is a {type(value).__name__}, which is not JSON-serialisable"


def _keys_are_strings(value: Any) -> bool:
    """True when every dict key, at any depth, is a str (orjson checks this in C when it is present)."""
    if _orjson is not None:
        try:
            _orjson.dumps(value)
            return True
        except TypeError:
            pass  # a non-str key, or something else orjson refuses (an int over 64 bits): look closer
    return _find_bad(value, "") is None


def check_json(value: dict[str, Any], what: str, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> str:
    """Encode ``value`` as strict JSON, or raise SerializationError naming the offending key."""
    try:
        # The standard library refuses NaN and Infinity; it would quietly turn a key like 1 into "1",
        # which _keys_are_strings refuses (a dict {1: "a", "1": "b"} would otherwise lose a value).
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
        if not _keys_are_strings(value):
            raise TypeError("a key is not a string")
    except (TypeError, ValueError) as exc:
        reason = _find_bad(value, "") or str(exc)
        raise SerializationError(f"{what} is not JSON: {reason}") from None
    if len(text) > max_bytes:
        biggest = max(value, key=lambda k: len(json.dumps(value[k])), default="")
        raise SerializationError(
            f"{what} is {len(text)} bytes of JSON, over the {max_bytes}-byte limit (largest key: {biggest!r})"
        )
    return text


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    return json.loads(text)


@dataclass(frozen=True, slots=True)
class Command:
    """Run one attempt of one step (or of its compensation) on a worker."""

    transaction_id: str
    workflow_id: str
    step: str
    worker: str
    kind: Kind
    attempt: int
    attempt_id: str
    idempotency_key: str
    context: dict[str, Any]
    deadline: float | None
    timeout: float | None
    cause: dict[str, Any] | None = None  # for a compensation: the error that made the saga roll back
    circuit_breaker: str | None = None  # the breaker guarding this attempt's service
    probe: bool | None = None  # whether the breaker let this attempt through as a half-open probe

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "workflow_id": self.workflow_id,
            "step": self.step,
            "worker": self.worker,
            "kind": self.kind.value,
            "attempt": self.attempt,
            "attempt_id": self.attempt_id,
            "idempotency_key": self.idempotency_key,
            "context": self.context,
            "deadline": self.deadline,
            "timeout": self.timeout,
            "cause": self.cause,
            "circuit_breaker": self.circuit_breaker,
            "probe": self.probe,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Command:
        return cls(
            transaction_id=d["transaction_id"],
            workflow_id=d["workflow_id"],
            step=d["step"],
            worker=d["worker"],
            kind=Kind(d["kind"]),
            attempt=d["attempt"],
            attempt_id=d["attempt_id"],
            idempotency_key=d["idempotency_key"],
            context=d["context"],
            deadline=d["deadline"],
            timeout=d["timeout"],
            cause=d.get("cause"),
            circuit_breaker=d.get("circuit_breaker"),
            probe=d.get("probe"),
        )


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one attempt: an output dict, or an error."""

    transaction_id: str
    step: str
    kind: Kind
    attempt_id: str
    output: dict[str, Any] | None
    error: ErrorInfo | None
    started_at: float
    finished_at: float
    context: dict[str, Any] | None = None  # on failure: a redacted, size-capped snapshot of the input

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "step": self.step,
            "kind": self.kind.value,
            "attempt_id": self.attempt_id,
            "output": self.output,
            "error": self.error.to_dict() if self.error else None,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "context": self.context,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(
            transaction_id=d["transaction_id"],
            step=d["step"],
            kind=Kind(d["kind"]),
            attempt_id=d["attempt_id"],
            output=d["output"],
            error=ErrorInfo.from_dict(d["error"]) if d.get("error") else None,
            started_at=d["started_at"],
            finished_at=d["finished_at"],
            context=d.get("context"),
        )
