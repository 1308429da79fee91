"""The old package's surface, for code migrating to this one: a thin layer over :class:`Runtime`.

``Orchestrator(workflow, event_bus)``, ``WorkerManager(event_bus).register(fn)`` and an in-memory
event bus behave as they did, but run on the durable engine (compensations run, retries apply).

The old package ran one Orchestrator per workflow, all on one event bus. Here every Orchestrator that
shares an event bus and a store shares one :class:`Runtime` (see :class:`SharedRuntime`): a store
file has a single owner, so one Runtime per Orchestrator would lock the second one out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from typing import Any

from multiagents.errors import DefinitionError, MultiAgentsError
from multiagents.runtime import DEFAULT_STORE, Runtime
from multiagents.store import Store, open_store
from multiagents.worker import Worker, worker
from multiagents.workflow import WorkflowDefinition

__all__ = ["InMemoryEventBus", "Orchestrator", "SharedRuntime", "WorkerManager"]


class InMemoryEventBus:
    """The old event bus object: it gathers the workers registered on it, and the Runtimes its
    Orchestrators share (one per store)."""

    url = "memory://"

    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.runtimes: dict[Hashable, SharedRuntime] = {}

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


def _store_key(store: str | Store) -> tuple[Hashable, Store]:
    """Which store ``store`` names, and a store object for it: one SQLite file however it is spelled."""
    if not isinstance(store, str):
        return ("instance", id(store)), store
    opened = open_store(store)
    path = getattr(opened, "path", None)
    key: Hashable = ("file", os.path.abspath(path)) if isinstance(path, str) else ("url", store)
    return key, opened


class SharedRuntime:
    """The one Runtime behind every Orchestrator of one event bus and one store.

    It is built on the first ``start()`` of one of them, not when they are constructed, so every
    Orchestrator built before that (the old pattern: build them all, then start them) is registered
    in it, with every worker on the bus. An Orchestrator whose workflow it does not run yet (built
    after the Runtime started, or whose workers were registered later) restarts it with the larger
    set: a Runtime cannot take workflows once it runs, and a second Runtime on the store would be
    locked out. The restart is what a crash recovery does, without the crash: the store object is
    kept (so ``memory://`` loses nothing), the new Runtime resumes every unfinished workflow, attempts
    that were running at that moment run again, and ``Orchestrator.wait`` calls carry on across it.
    The Runtime stops when the last started Orchestrator stops.
    """

    def __init__(self, event_bus: InMemoryEventBus, store: Store) -> None:
        self.event_bus = event_bus
        self.store = store
        self.members: list[Orchestrator] = []  # every Orchestrator built on this bus and store, in order
        self.started: list[Orchestrator] = []
        self.runtime: Runtime | None = None
        self.generation = 0  # moves on whenever the Runtime is stopped or replaced
        self._workflows: list[WorkflowDefinition] = []  # what the current Runtime was built with
        self._workers: dict[str, Worker] = {}
        self._lock = asyncio.Lock()
        self._calls = 0  # calls using the Runtime right now
        self._idle = asyncio.Event()
        self._idle.set()

    def _wanted(self, starting: Orchestrator) -> list[WorkflowDefinition]:
        """The workflows to run: those of the started Orchestrators and of ``starting``, and those of
        the others that can already run (no worker missing, none clashing), so that starting them
        later needs no restart. A problem in a needed workflow is left for Runtime to report."""
        needed = [m.workflow for m in self.members if m is starting or m in self.started]
        chosen: dict[str, WorkflowDefinition] = {}
        workers = dict(self.event_bus.workers)
        for wf in needed:
            other = chosen.setdefault(wf.id, wf)
            if other.fingerprint != wf.fingerprint:
                raise DefinitionError(
                    f"two Orchestrators on one event bus and store run different workflows with the id "
                    f"{wf.id!r}; give them different ids or different stores"
                )
            for w in wf.worker_objects:
                workers.setdefault(w.name, w)
        for m in self.members:
            wf = m.workflow
            if wf.id in chosen:
                continue
            own = {w.name: w for w in wf.worker_objects}
            clash = any(n in workers and workers[n].fn is not w.fn for n, w in own.items())
            if clash or not wf.worker_names <= workers.keys() | own.keys():
                continue
            chosen[wf.id] = wf
            workers.update(own)
        return list(chosen.values())

    def _covers(self, workflows: list[WorkflowDefinition]) -> bool:
        """Whether the running Runtime has every workflow in ``workflows`` and every worker on the bus."""
        known = {wf.id: wf.fingerprint for wf in self._workflows}
        return all(known.get(wf.id) == wf.fingerprint for wf in workflows) and all(
            self._workers.get(name) is w for name, w in self.event_bus.workers.items()
        )

    async def start(self, orchestrator: Orchestrator) -> None:
        async with self._lock:
            workflows = self._wanted(orchestrator)
            if self.runtime is not None and not self._covers(workflows):
                await self._stop_runtime()
            if self.runtime is None:
                workers = dict(self.event_bus.workers)
                runtime = Runtime(workers=list(workers.values()), workflows=workflows, store=self.store)
                await runtime.start()
                self.runtime, self._workflows, self._workers = runtime, workflows, workers
            if orchestrator not in self.started:
                self.started.append(orchestrator)

    async def stop(self, orchestrator: Orchestrator) -> None:
        async with self._lock:
            if orchestrator in self.started:
                self.started.remove(orchestrator)
            if not self.started:
                await self._stop_runtime()

    async def _stop_runtime(self) -> None:
        """Stop the Runtime once the calls that use it have returned (waits excepted: they carry on)."""
        await self._idle.wait()
        runtime, self.runtime = self.runtime, None
        self.generation += 1
        if runtime is not None:
            await runtime.stop()

    @contextlib.asynccontextmanager
    async def use(self, orchestrator: Orchestrator) -> AsyncIterator[Runtime]:
        """The running Runtime for one call, once any restart in progress is over; a restart waits
        for the call to return, so no call runs into a Runtime that is stopping."""
        async with self._lock:
            if self.runtime is None or orchestrator not in self.started:
                raise MultiAgentsError("call `await orchestrator.start()` first")
            runtime = self.runtime
            self._calls += 1
            self._idle.clear()
        try:
            yield runtime
        finally:
            self._calls -= 1
            if not self._calls:
                self._idle.set()


class Orchestrator:
    """Runs one workflow, as the old package's Orchestrator did, on the Runtime it shares with the
    other Orchestrators of its event bus and store (``state_store``: a URL or a store; default the
    SQLite file ``multiagents.db``)."""

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
        key, store = _store_key(self.state_store)
        shared = event_bus.runtimes.get(key)
        if shared is None:
            shared = event_bus.runtimes[key] = SharedRuntime(event_bus, store)
        shared.members.append(self)
        self.shared = shared

    @property
    def runtime(self) -> Runtime | None:
        """The Runtime this Orchestrator runs on while it is started."""
        return self.shared.runtime if self in self.shared.started else None

    async def start(self) -> None:
        await self.shared.start(self)

    async def stop(self) -> None:
        await self.shared.stop(self)

    async def execute_workflow(
        self,
        workflow_id: str | Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """Start the workflow; ``execute_workflow(workflow_id, context)`` or ``execute_workflow(context)``."""
        if isinstance(workflow_id, Mapping):
            workflow_id, context = None, workflow_id
        async with self.shared.use(self) as rt:
            return await rt.execute_workflow(workflow_id or self.workflow.id, context)

    async def get_status(self, transaction_id: str) -> dict[str, Any]:
        async with self.shared.use(self) as rt:
            return await rt.get_status(transaction_id)

    async def wait(self, transaction_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the workflow's end; a restart of the shared Runtime meanwhile does not end the wait."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            async with self.shared.use(self) as rt:
                generation = self.shared.generation
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                return await rt.wait(transaction_id, left)
            except MultiAgentsError:
                if self.shared.generation == generation or self not in self.shared.started:
                    raise

    async def cancel_workflow(self, transaction_id: str) -> bool:
        """True if the workflow was running and is now being cancelled; False if it had finished."""
        async with self.shared.use(self) as rt:
            status = await rt.cancel_workflow(transaction_id)
        return not str(status.get("message", "")).endswith("nothing to cancel")
