"""The old package's surface, for code migrating to this one: a thin layer over :class:`Runtime`.

``Orchestrator(workflow, event_bus)``, ``WorkerManager(event_bus).register(fn)`` and an in-memory
event bus behave as they did, but run on the durable engine (compensations run, retries apply).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from multiagents.errors import MultiAgentsError
from multiagents.runtime import DEFAULT_STORE, Runtime
from multiagents.store import Store
from multiagents.worker import Worker, worker
from multiagents.workflow import WorkflowDefinition

__all__ = ["InMemoryEventBus", "Orchestrator", "WorkerManager"]


class InMemoryEventBus:
    """The old event bus object: here it only gathers the workers registered on it."""

    url = "memory://"

    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class WorkerManager:
    def __init__(self, event_bus: InMemoryEventBus, **_: Any) -> None:
        self.event_bus = event_bus

    def register(self, fn: Worker | Callable[..., Any]) -> Worker:
        """Register a ``@worker`` (a plain function is wrapped, named after itself)."""
        w = fn if isinstance(fn, Worker) else worker(fn.__name__)(fn)
        self.event_bus.workers[w.name] = w
        return w

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class Orchestrator:
    """Runs one workflow, as the old package's Orchestrator did, on a Runtime."""

    def __init__(
        self,
        workflow: WorkflowDefinition,
        event_bus: InMemoryEventBus,
        state_store: str | Store | None = None,
        **_: Any,
    ) -> None:
        self.workflow = workflow
        self.event_bus = event_bus
        self.state_store = state_store or DEFAULT_STORE
        self.runtime: Runtime | None = None

    async def start(self) -> None:
        if self.runtime is None:
            self.runtime = Runtime(
                workers=list(self.event_bus.workers.values()),
                workflows=[self.workflow],
                store=self.state_store,
            )
            await self.runtime.start()

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None

    def _rt(self) -> Runtime:
        if self.runtime is None:
            raise MultiAgentsError("call `await orchestrator.start()` first")
        return self.runtime

    async def execute_workflow(
        self,
        workflow_id: str | Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """Start the workflow; ``execute_workflow(workflow_id, context)`` or ``execute_workflow(context)``."""
        if isinstance(workflow_id, Mapping):
            workflow_id, context = None, workflow_id
        return await self._rt().execute_workflow(workflow_id or self.workflow.id, context)

    async def get_status(self, transaction_id: str) -> dict[str, Any]:
        return await self._rt().get_status(transaction_id)

    async def wait(self, transaction_id: str, timeout: float | None = None) -> dict[str, Any]:
        return await self._rt().wait(transaction_id, timeout)

    async def cancel_workflow(self, transaction_id: str) -> bool:
        """True if the workflow was running and is now being cancelled; False if it had finished."""
        status = await self._rt().cancel_workflow(transaction_id)
        return not str(status.get("message", "")).endswith("nothing to cancel")
