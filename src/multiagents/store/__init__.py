"""Stores keep workflow instances durably. A store is a small Protocol; pick one by URL.

``memory://`` keeps everything in this process (tests, throwaway runs); ``sqlite:///path.db`` is the
embedded default. Redis and PostgreSQL stores live in their own modules and need their extras.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from multiagents.errors import DefinitionError
from multiagents.messages import Command
from multiagents.state import SagaState, WorkflowInstance
from multiagents.tracking import ErrorFilter

__all__ = ["Store", "Transition", "open_store"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One decided step of one instance: its new state and the commands it sends.

    A store writes the instance with compare-and-set: only if the stored version is still
    ``expected_version`` (0 means the instance is new and is inserted). Stores that share a server
    with the bus also write ``commands`` in the same transaction (an outbox); the embedded stores
    need not, because on restart the commands of attempts that were in flight are derived again
    from the instance itself.
    """

    instance: WorkflowInstance
    expected_version: int
    commands: tuple[Command, ...] = ()
    errors: tuple[dict[str, Any], ...] = ()  # error-tracker records, written in the same transaction


@runtime_checkable
class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(self, transitions: Sequence[Transition]) -> None:
        """Write every transition atomically; raise ConcurrencyConflict if any version moved on."""
        ...

    async def load(self, transaction_id: str) -> WorkflowInstance | None: ...

    async def list_instances(
        self, *, state: SagaState | None = None, workflow_id: str | None = None, limit: int = 100
    ) -> list[WorkflowInstance]:
        """Instances, newest first."""
        ...

    async def unfinished(self) -> list[WorkflowInstance]:
        """Every instance not in a terminal state, oldest first."""
        ...

    # The error log (multiagents.tracking.ErrorLog) lives beside the instances.
    async def record_errors(self, records: Iterable[Mapping[str, Any]]) -> None: ...

    async def query_errors(self, where: ErrorFilter) -> list[dict[str, Any]]:
        """Matching records, newest first."""
        ...

    async def prune_errors(self, *, before: float | None, keep: int | None) -> int:
        """Delete records older than ``before`` and beyond the newest ``keep``; returns how many."""
        ...


def open_store(url: str, *, exclusive: bool = True) -> Store:
    """A store for ``url``: ``memory://``, ``sqlite:///path.db`` (``exclusive`` takes the file lock)."""
    if url == "memory://" or url == "memory":
        from multiagents.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite://"):
        from multiagents.store.sqlite import SQLiteStore

        path = url[len("sqlite://") :]
        if path.startswith("/"):
            path = path[1:]
        if not path:
            raise DefinitionError(f"store URL {url!r} names no file; use sqlite:///path/to/file.db")
        return SQLiteStore(path, exclusive=exclusive)
    scheme = url.split(":", 1)[0]
    if scheme in ("redis", "rediss", "postgresql", "postgres"):
        raise DefinitionError(
            f"the {scheme} store is not available in this version; use memory:// or sqlite:///file.db"
        )
    raise DefinitionError(f"unknown store URL {url!r}; use memory:// or sqlite:///path.db")
