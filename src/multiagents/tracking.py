"""Error tracking: every failed attempt and failed compensation, recorded by the engine and summarised.

The engine records each failure in the same store transaction as the transition that decided on it, so
tracking costs no extra round trip on a step's hot path and a summary covers every process that shares
the store, across restarts. :class:`ErrorTracker` keeps the seed's interface (``record_error(dict)``,
``get_error_summary()``) and adds filters and the list of workflows that need attention.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from multiagents._json import dumps
from multiagents.errors import ErrorCategory, ErrorInfo, MultiAgentsError

__all__ = ["ErrorFilter", "ErrorLog", "ErrorTracker", "error_record", "redact", "severity_of"]

SNAPSHOT_LIMIT = 2048  # bytes of JSON kept of a failing attempt's context
MESSAGE_LIMIT = 2000
DEFAULT_RETENTION = 30 * 86400.0
DEFAULT_MAX_ERRORS = 100_000

_SECRET = re.compile(
    r"pass(word|wd)?|pwd|secret|token|api[_-]?key|access[_-]?key|auth|bearer|credential|cookie|"
    r"session(_?id)?|card[_-]?number|cvv|cvc|ssn|private[_ -]?key",
    re.IGNORECASE,
)


def redact(value: Any, limit: int = SNAPSHOT_LIMIT) -> Any:
    """A copy of ``value`` with secret-looking keys masked, cut down to about ``limit`` bytes of JSON."""

    def mask(v: Any, depth: int) -> Any:
        if isinstance(v, Mapping):
            if depth > 6:
                return "…"
            return {
                str(k): ("***" if _SECRET.search(str(k)) else mask(item, depth + 1)) for k, item in v.items()
            }
        if isinstance(v, list | tuple):
            return [mask(item, depth + 1) for item in v[:50]]
        if isinstance(v, str):
            return v if len(v) <= 200 else v[:200] + "…"
        if v is None or isinstance(v, bool | int | float):
            return v
        return repr(v)[:200]

    masked = mask(value, 0)
    if len(dumps(masked)) <= limit or not isinstance(masked, dict):
        return masked
    kept: dict[str, Any] = {}
    size = 2
    for k, v in masked.items():
        piece = len(dumps({k: v}))
        if size + piece > limit:
            kept["…"] = f"{len(masked) - len(kept)} more keys cut"
            break
        kept[k] = v
        size += piece
    return kept


def _error_type(error: ErrorInfo, kind: str) -> str:
    """The seed's error_type vocabulary: validation_error, connection_error, unexpected_error, ..."""
    if kind == "compensate":
        return "compensation_failed"
    names = set(error.types)
    if error.category is ErrorCategory.TRANSIENT:
        if "ConnectionError" in names or any(n.endswith("ConnectionError") for n in names):
            return "connection_error"
        if "TimeoutError" in names:
            return "timeout_error"
        return "transient_error"
    return {
        ErrorCategory.VALIDATION: "validation_error",
        ErrorCategory.TIMEOUT: "timeout_error",
        ErrorCategory.CIRCUIT_OPEN: "circuit_open",
        ErrorCategory.PERMANENT: "business_failure" if error.type == "StepFailed" else "permanent_error",
        ErrorCategory.SERIALIZATION: "serialization_error",
        ErrorCategory.UNEXPECTED: "unexpected_error",
    }[error.category]


_SEVERITY = {
    "validation_error": "medium",
    "serialization_error": "medium",
    "circuit_open": "medium",
    "business_failure": "medium",
    "connection_error": "high",
    "timeout_error": "high",
    "transient_error": "high",
    "permanent_error": "high",
    "unexpected_error": "critical",
    "compensation_failed": "critical",
}


def severity_of(error_type: str) -> str:
    """The seed's severities: validation medium, connection high, unexpected critical."""
    return _SEVERITY.get(error_type, "high")


def _jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold (a Decimal, a datetime) written as its repr."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


def error_record(
    *,
    transaction_id: str,
    workflow_id: str,
    step: str | None,
    worker: str | None,
    kind: str,
    attempt: int,
    attempt_id: str | None,
    error: ErrorInfo,
    context: Mapping[str, Any] | None,
    at: float,
) -> dict[str, Any]:
    """One failure as the tracker stores it. Pure: the state machine builds these."""
    error_type = _error_type(error, kind)
    return {
        "id": f"{attempt_id or transaction_id}:{kind}:{attempt}:{error.category.value}",
        "recorded_at": at,
        "transaction_id": transaction_id,
        "workflow_id": workflow_id,
        "step": step,
        "worker_name": worker,
        "kind": kind,
        "attempt": attempt,
        "category": error.category.value,
        "error_type": error_type,
        "exception_type": error.type,
        "error_message": error.message[:MESSAGE_LIMIT],
        "traceback": error.traceback,
        "context_data": None if context is None else redact(context),
        "severity": error.severity or severity_of(error_type),
        "retry_after": error.retry_after,
    }


@dataclass(frozen=True, slots=True)
class ErrorFilter:
    """Which records to read; every field narrows, None means any."""

    transaction_id: str | None = None
    workflow_id: str | None = None
    step: str | None = None
    category: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int | None = None

    def matches(self, r: Mapping[str, Any]) -> bool:
        at = r.get("recorded_at", 0.0)
        return (
            (self.transaction_id is None or r.get("transaction_id") == self.transaction_id)
            and (self.workflow_id is None or r.get("workflow_id") == self.workflow_id)
            and (self.step is None or r.get("step") == self.step)
            and (self.category is None or r.get("category") == self.category)
            and (self.since is None or at >= self.since)
            and (self.until is None or at < self.until)
        )


class ErrorLog(Protocol):
    """Where error records live: every store implements it, next to the instances."""

    async def record_errors(self, records: Iterable[Mapping[str, Any]]) -> None: ...

    async def query_errors(self, where: ErrorFilter) -> list[dict[str, Any]]:
        """Matching records, newest first."""
        ...

    async def prune_errors(self, *, before: float | None, keep: int | None) -> int:
        """Delete records older than ``before`` and beyond the newest ``keep``; returns how many."""
        ...


class _ListLog:
    """The standalone tracker's log: in this process only, bounded, safe to use from worker threads."""

    def __init__(self, max_errors: int) -> None:
        self.records: deque[dict[str, Any]] = deque(maxlen=max_errors)
        self._lock = threading.Lock()

    def record_sync(self, records: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self.records.extend(dict(r) for r in records)

    def query_sync(self, where: ErrorFilter) -> list[dict[str, Any]]:
        with self._lock:
            newest_first = list(reversed(self.records))
        found = [r for r in newest_first if where.matches(r)]
        return found[: where.limit] if where.limit is not None else found

    async def record_errors(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.record_sync(records)

    async def query_errors(self, where: ErrorFilter) -> list[dict[str, Any]]:
        return self.query_sync(where)

    async def prune_errors(self, *, before: float | None, keep: int | None) -> int:
        old = len(self.records)
        kept = [r for r in self.records if before is None or r.get("recorded_at", 0.0) >= before]
        self.records = deque(kept[-keep:] if keep is not None else kept, maxlen=self.records.maxlen)
        return old - len(self.records)


def summarize(records: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """The seed's summary shape, computed from records (newest first)."""
    total = len(records)
    if total == 0:
        return {"status": "no_errors", "total_errors": 0}
    counts: dict[str, int] = {}
    patterns: dict[str, int] = {}
    categories: dict[str, int] = {}
    severities: dict[str, int] = {}
    for r in reversed(records):  # oldest first, so ties keep the order errors happened in (as the seed)
        et = r.get("error_type", "unknown")
        counts[et] = counts.get(et, 0) + 1
        key = f"{r.get('worker_name') or 'unknown'}:{et}"
        patterns[key] = patterns.get(key, 0) + 1
        cat = r.get("category") or "unknown"
        categories[cat] = categories.get(cat, 0) + 1
        sev = r.get("severity") or "unknown"
        severities[sev] = severities.get(sev, 0) + 1
    return {
        "total_errors": total,
        "recent_errors_1h": sum(1 for r in records if now - r.get("recorded_at", 0.0) < 3600),
        "error_rates": {k: v / total * 100 for k, v in counts.items()},
        "top_error_patterns": sorted(patterns.items(), key=lambda kv: kv[1], reverse=True)[:5],
        "error_counts_by_type": counts,
        "error_counts_by_category": categories,
        "error_counts_by_severity": severities,
        "summary_generated_at": now,
    }


def _filter(filters: Mapping[str, Any]) -> ErrorFilter:
    allowed = set(ErrorFilter.__dataclass_fields__)
    unknown = sorted(set(filters) - allowed)
    if unknown:
        raise ValueError(f"unknown error filter {', '.join(unknown)}; filter by {', '.join(sorted(allowed))}")
    return ErrorFilter(**filters)


class ErrorTracker:
    """Records and summarises errors.

    ``ErrorTracker()`` on its own keeps records in this process, as the seed's class does. A Runtime's
    tracker (``runtime.error_tracker``) reads and writes the Runtime's store, where the engine records
    every failed attempt by itself; its sync methods work on stores that can answer synchronously
    (memory, SQLite), and the async ones (``summary``, ``errors``, ``needs_attention``) on every store.
    """

    def __init__(
        self,
        log: ErrorLog | None = None,
        *,
        max_errors: int = DEFAULT_MAX_ERRORS,
        retention: float = DEFAULT_RETENTION,
        clock: Any = None,
        attention: Any = None,
    ) -> None:
        self._log: ErrorLog = log if log is not None else _ListLog(max_errors)
        self.max_errors = max_errors
        self.retention = retention
        self._now = clock.now if clock is not None else time.time
        self._attention = attention  # async () -> list of status dicts, given by a Runtime
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def error_counts(self) -> dict[str, int]:
        """The seed's attribute: how many records of each error_type (sync stores only)."""
        counts: dict[str, int] = self.get_error_summary().get("error_counts_by_type", {})
        return counts

    @property
    def error_patterns(self) -> dict[str, int]:
        """The seed's attribute: how many records of each ``worker:error_type`` (sync stores only)."""
        patterns: dict[str, int] = {}
        for r in self.errors:
            key = f"{r.get('worker_name') or 'unknown'}:{r.get('error_type', 'unknown')}"
            patterns[key] = patterns.get(key, 0) + 1
        return patterns

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The seed's attribute: every record, oldest first (sync stores only)."""
        return list(reversed(self._query_sync(ErrorFilter())))

    def _normalise(self, info: Mapping[str, Any]) -> dict[str, Any]:
        rec = {str(k): _jsonable(v) for k, v in info.items()}
        now = self._now()
        at = rec.get("recorded_at")
        if isinstance(at, bool) or not isinstance(at, int | float):
            # The seed stamps records with an ISO string; the log orders and windows by epoch seconds.
            if at is not None:
                rec["reported_at"] = at
            rec["recorded_at"] = now
        rec.setdefault("error_type", "unknown")
        rec.setdefault("worker_name", "unknown")
        rec.setdefault("severity", severity_of(rec["error_type"]))
        rec.setdefault("id", f"user:{uuid.uuid4().hex}")
        if "context_data" in rec:
            rec["context_data"] = redact(rec["context_data"])
        return rec

    def record_error(self, error_info: Mapping[str, Any]) -> None:
        """Record a failure described by a dict (the seed's keys: error_type, worker_name, ...)."""
        rec = self._normalise(error_info)
        sync = getattr(self._log, "record_sync", None)
        if sync is not None:
            sync([rec])
            return
        task = asyncio.get_running_loop().create_task(self._log.record_errors([rec]))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _query_sync(self, where: ErrorFilter) -> list[dict[str, Any]]:
        sync = getattr(self._log, "query_sync", None)
        if sync is None:
            raise MultiAgentsError(
                "this store answers only asynchronously: use `await tracker.summary()` or "
                "`await tracker.query()`"
            )
        result: list[dict[str, Any]] = sync(where)
        return result

    def get_error_summary(self, **filters: Any) -> dict[str, Any]:
        """The seed's summary; ``filters`` narrow it (workflow_id, step, category, since, until)."""
        return summarize(self._query_sync(_filter(filters)), self._now())

    async def summary(self, **filters: Any) -> dict[str, Any]:
        """``get_error_summary`` for every store."""
        await self.flush()
        return summarize(await self._log.query_errors(_filter(filters)), self._now())

    async def query(self, **filters: Any) -> list[dict[str, Any]]:
        """Records, newest first, filtered by transaction_id, workflow_id, step, category, since, until."""
        await self.flush()
        return await self._log.query_errors(_filter(filters))

    async def needs_attention(self) -> list[dict[str, Any]]:
        """Workflows that ended compensation_failed: a person must look at them."""
        if self._attention is None:
            return []
        result: list[dict[str, Any]] = await self._attention()
        return result

    async def prune(self) -> int:
        """Apply the retention bounds now; the Runtime also does this as records accumulate."""
        return await self._log.prune_errors(before=self._now() - self.retention, keep=self.max_errors)

    async def flush(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
