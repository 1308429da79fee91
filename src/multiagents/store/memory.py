"""An in-memory store: a real implementation (instances are kept as JSON, copied in and out)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from multiagents._json import dumps, loads
from multiagents.errors import ConcurrencyConflict
from multiagents.state import SagaState, WorkflowInstance
from multiagents.store import Transition
from multiagents.tracking import ErrorFilter

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, str, str, float, str]] = {}
        self._errors: dict[str, str] = {}  # id -> JSON, in insertion order
        self._errors_lock = threading.Lock()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def commit(self, transitions: Sequence[Transition]) -> None:
        staged: dict[str, tuple[int, str, str, float, str]] = {}
        for t in transitions:
            inst = t.instance
            current = staged.get(inst.transaction_id) or self._rows.get(inst.transaction_id)
            expected = t.expected_version
            # 0 means "insert": it conflicts with any stored row, even one at version 0 (as in SQL).
            if (current is None and expected != 0) or (
                current is not None and (expected == 0 or current[0] != expected)
            ):
                have = None if current is None else current[0]
                raise ConcurrencyConflict(
                    f"workflow {inst.transaction_id}: expected version {expected}, store has {have}"
                )
            staged[inst.transaction_id] = (
                inst.version,
                inst.state.value,
                inst.workflow_id,
                inst.created_at,
                dumps(inst.to_dict()),
            )
        self._rows.update(staged)
        for t in transitions:
            if t.errors:
                self.record_sync(t.errors)

    async def load(self, transaction_id: str) -> WorkflowInstance | None:
        row = self._rows.get(transaction_id)
        return None if row is None else WorkflowInstance.from_dict(loads(row[4]))

    async def list_instances(
        self, *, state: SagaState | None = None, workflow_id: str | None = None, limit: int = 100
    ) -> list[WorkflowInstance]:
        rows = [
            r
            for r in self._rows.values()
            if (state is None or r[1] == state.value) and (workflow_id is None or r[2] == workflow_id)
        ]
        rows.sort(key=lambda r: r[3], reverse=True)
        return [WorkflowInstance.from_dict(loads(r[4])) for r in rows[:limit]]

    async def unfinished(self) -> list[WorkflowInstance]:
        terminal = {s.value for s in SagaState if s.is_terminal}
        rows = sorted((r for r in self._rows.values() if r[1] not in terminal), key=lambda r: r[3])
        return [WorkflowInstance.from_dict(loads(r[4])) for r in rows]

    # ---- error log (sync twins serve ErrorTracker's sync methods) --------------------------------

    def record_sync(self, records: Iterable[Mapping[str, Any]]) -> None:
        with self._errors_lock:  # sync workers may record from their threads
            for r in records:
                self._errors.setdefault(r["id"], dumps(dict(r)))

    def query_sync(self, where: ErrorFilter) -> list[dict[str, Any]]:
        # Newest first; records of one instant in reverse order of writing, as the SQL stores do.
        with self._errors_lock:
            stored = list(reversed(self._errors.values()))
        found = [rec for rec in map(loads, stored) if where.matches(rec)]
        found.sort(key=lambda rec: -rec.get("recorded_at", 0.0))
        return found[: where.limit] if where.limit is not None else found

    async def record_errors(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.record_sync(records)

    async def query_errors(self, where: ErrorFilter) -> list[dict[str, Any]]:
        return self.query_sync(where)

    async def prune_errors(self, *, before: float | None, keep: int | None) -> int:
        records = self.query_sync(ErrorFilter())
        kept = [r for r in records if before is None or r.get("recorded_at", 0.0) >= before]
        if keep is not None:
            kept = kept[:keep]
        ids = {r["id"] for r in kept}
        removed = len(self._errors) - len(ids)
        self._errors = {k: v for k, v in self._errors.items() if k in ids}
        return removed
