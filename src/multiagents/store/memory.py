"""An in-memory store: a real implementation (instances are kept as JSON, copied in and out)."""

from __future__ import annotations

from collections.abc import Sequence

from multiagents._json import dumps, loads
from multiagents.errors import ConcurrencyConflict
from multiagents.state import SagaState, WorkflowInstance
from multiagents.store import Transition

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, str, str, float, str]] = {}

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
