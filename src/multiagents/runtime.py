"""The Runtime: one object that runs workers and workflows on a bus and a store."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from multiagents.bus import Bus, open_bus
from multiagents.clock import Clock, SystemClock
from multiagents.engine import Engine
from multiagents.errors import (
    DefinitionError,
    MultiAgentsError,
    UnknownWorkflow,
    ValidationError,
    WorkflowError,
)
from multiagents.machine import Cancel, RetryCompensations, new_instance
from multiagents.messages import DEFAULT_MAX_PAYLOAD, check_json
from multiagents.policy import seconds
from multiagents.resilience import BreakerTransition
from multiagents.resilience.breaker import BreakerRegistry, BreakerStore, CircuitBreaker, CircuitState
from multiagents.state import SagaState
from multiagents.status import describe
from multiagents.store import Store, open_store
from multiagents.tracking import DEFAULT_MAX_ERRORS, DEFAULT_RETENTION, ErrorTracker
from multiagents.worker import Worker
from multiagents.workers import WorkerPool
from multiagents.workflow import WorkflowDefinition

__all__ = ["Runtime"]

DEFAULT_STORE = "sqlite:///multiagents.db"


class Runtime:
    """Runs ``workflows`` with ``workers`` on a bus and a store; use it as an async context manager.

    ``bus`` and ``store`` take a URL or an instance. The default is the embedded setup: an in-memory
    bus and a SQLite file, so workflows survive a restart of the process. On start, every unfinished
    workflow in the store is resumed. ``clock`` and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        workers: Iterable[Worker] = (),
        workflows: Iterable[WorkflowDefinition] = (),
        *,
        bus: str | Bus = "memory://",
        store: str | Store = DEFAULT_STORE,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        max_errors: int = DEFAULT_MAX_ERRORS,
        error_retention: float | timedelta = DEFAULT_RETENTION,
        breakers: Iterable[CircuitBreaker] | BreakerRegistry = (),
        breaker_store: BreakerStore | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.max_payload = max_payload
        self.bus: Bus = open_bus(bus) if isinstance(bus, str) else bus
        self.store: Store = open_store(store) if isinstance(store, str) else store
        registered: dict[str, Worker] = {}
        if isinstance(workflows, WorkflowDefinition) or isinstance(workers, Worker):
            raise DefinitionError("workers and workflows take lists: Runtime(workers=[...], workflows=[...])")
        raw_workflows = list(workflows)
        for wf in raw_workflows:
            if not isinstance(wf, WorkflowDefinition):
                raise DefinitionError(
                    f"workflows takes built definitions (WorkflowBuilder(...).build()), got {wf!r}"
                )
        for w in [*workers, *(w for wf in raw_workflows for w in wf.worker_objects)]:
            if not isinstance(w, Worker):
                raise DefinitionError(f"{w!r} is not a worker; decorate it with @worker(name)")
            if w.name in registered and registered[w.name].fn is not w.fn:
                raise DefinitionError(f"two different functions are registered as worker {w.name!r}")
            registered[w.name] = w
        self.workers = registered
        self.workflows: dict[str, WorkflowDefinition] = {}
        for wf in raw_workflows:
            if wf.id in self.workflows:
                raise DefinitionError(f"two workflows have the id {wf.id!r}")
            self.workflows[wf.id] = wf.bind(registered)
        self._check_workers()
        self.breakers = (
            breakers
            if isinstance(breakers, BreakerRegistry)
            else BreakerRegistry(
                breakers, store=breaker_store, clock=self.clock, on_transition=self._breaker_changed
            )
        )
        self._pool = WorkerPool(
            self.bus, self.clock, registered.values(), max_payload=max_payload, breakers=self.breakers
        )
        self._engine = Engine(self.workflows, self.store, self.bus, self.clock, self.rng)
        self.error_tracker = ErrorTracker(
            self.store,
            max_errors=max_errors,
            retention=seconds(error_retention, "error_retention") or 0.0,
            clock=self.clock,
            attention=self._needs_attention,
        )
        self._engine.tracker = self.error_tracker
        self._engine.breakers = self.breakers
        self._started = False
        self.resumed = 0

    def _check_workers(self) -> None:
        missing = [
            f"workflow {wf.id!r} step {step.name!r} needs {role} {name!r}"
            for wf in self.workflows.values()
            for step in wf.steps.values()
            for role, name in (("worker", step.worker_name), ("compensation worker", step.compensation_name))
            if name is not None and name not in self.workers
        ]
        if missing:
            raise DefinitionError(
                "workers are missing; pass them in Runtime(workers=[...]):\n  - " + "\n  - ".join(missing)
            )

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        await self.store.open()
        try:
            await self.bus.open()
            self.resumed = await self._engine.start()
            await self.error_tracker.prune()  # retention also holds for a store that was idle
            self._pool.start()
        except BaseException:
            await self.store.close()
            raise
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self._pool.stop()
        await self._engine.stop()
        await self.bus.close()
        await self.store.close()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _require_started(self) -> None:
        if not self._started:
            raise MultiAgentsError("the Runtime is not running; use `async with Runtime(...) as rt:`")

    # ---- workflows ------------------------------------------------------------------------------

    def _prepare_input(self, definition: WorkflowDefinition, context: Any) -> dict[str, Any]:
        if context is None:
            context = {}
        if not isinstance(context, Mapping):
            raise ValidationError(
                f"the context of workflow {definition.id!r} must be a dict, got {type(context).__name__}"
            )
        data = dict(context)
        if definition.input_model is not None:
            try:
                model = definition.input_model.model_validate(data)
            except PydanticValidationError as exc:
                problems = [
                    f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
                ]
                raise ValidationError(
                    f"input to workflow {definition.id!r} does not match {definition.input_model.__name__}",
                    problems,
                ) from None
            # Only what was given (coerced), under the names it was given: filling in absent optional
            # fields would hand later workers' models values (None) they never allowed.
            data = {**data, **model.model_dump(mode="json", by_alias=True, exclude_unset=True)}
        # A JSON round trip: the stored input shares nothing with the caller's objects.
        parsed: dict[str, Any] = json.loads(
            check_json(data, f"the context of workflow {definition.id!r}", self.max_payload)
        )
        return parsed

    async def execute_workflow(
        self,
        workflow_id: str | WorkflowDefinition,
        context: Mapping[str, Any] | None = None,
        *,
        transaction_id: str | None = None,
    ) -> str:
        """Start a workflow; returns its transaction id once the start is stored.

        Input is validated first (the workflow's ``input_model``, plain JSON, size): a bad input
        raises ``ValidationError`` listing every problem, and nothing is started. Passing a
        ``transaction_id`` that already exists returns it without starting a second run.
        """
        self._require_started()
        if isinstance(workflow_id, WorkflowDefinition):
            workflow_id = workflow_id.id
        if not isinstance(workflow_id, str):
            raise DefinitionError(
                f"execute_workflow takes the workflow's id (a str), got {type(workflow_id).__name__}"
            )
        definition = self.workflows.get(workflow_id)
        if definition is None:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise UnknownWorkflow(f"no workflow {workflow_id!r} is registered (registered: {known})")
        data = self._prepare_input(definition, context)
        tid = transaction_id or uuid.uuid4().hex
        if transaction_id is not None and await self.store.load(tid) is not None:
            return tid
        inst = new_instance(definition, tid, data, self.clock.now())
        await self._engine.start_instance(inst)
        return tid

    async def wait(self, transaction_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the workflow is in a terminal state; returns its status.

        ``timeout`` is in real seconds, even with a FakeClock (drive fake time with ``clock.run_until``).
        """
        self._require_started()
        try:
            inst = await asyncio.wait_for(self._engine.wait(transaction_id), timeout)
        except TimeoutError:
            status = await self.get_status(transaction_id)
            raise TimeoutError(
                f"workflow {transaction_id} is still {status['state']} after {timeout}s"
            ) from None
        return self._describe(inst)

    async def run(
        self,
        workflow_id: str,
        context: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Start a workflow and wait for its end; returns its status."""
        return await self.wait(await self.execute_workflow(workflow_id, context), timeout)

    def _describe(self, inst: Any) -> dict[str, Any]:
        defn = self.workflows.get(inst.workflow_id)
        # Another definition's step order would not match the instance's steps (see DefinitionMismatch).
        status = describe(inst, defn.order if defn and defn.fingerprint == inst.fingerprint else None)
        blocked = self._engine.blocked.get(inst.transaction_id)
        if blocked:
            status["blocked"] = blocked
        return status

    def _breaker_changed(self, change: BreakerTransition) -> None:
        """A breaker this process drives opened: the error tracker records it (high severity)."""
        if change.new is not CircuitState.OPEN:
            return
        self.error_tracker.record_error(
            {
                "id": f"breaker:{change.breaker}:{change.at}",
                "recorded_at": change.at,
                "error_type": "circuit_opened",
                "category": "circuit_open",
                "worker_name": change.breaker,
                "severity": "high",
                "error_message": (
                    f"circuit breaker {change.breaker!r} opened ({change.old.value} -> open) after "
                    f"{change.failure_count} failures; it half-opens in {change.retry_after or 0:g}s"
                ),
            }
        )

    async def _needs_attention(self) -> list[dict[str, Any]]:
        return await self.list_workflows(state=SagaState.COMPENSATION_FAILED, limit=1000)

    async def get_status(self, transaction_id: str) -> dict[str, Any]:
        """The workflow's status; with the current state of the circuit breakers its steps use."""
        self._require_started()
        inst = await self._engine.instance(transaction_id)
        status = self._describe(inst)
        defn = self.workflows.get(inst.workflow_id)
        names = sorted(
            {n for s in defn.steps.values() for n in (s.breaker_name(), s.breaker_name(True)) if n}
            if defn
            else set()
        )
        if names:
            status["breakers"] = {n: await self.breakers.get(n).snapshot() for n in names}
        return status

    async def list_workflows(
        self, state: SagaState | str | None = None, limit: int = 100, workflow_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Status dicts, newest first."""
        self._require_started()
        if state is not None and state not in {s.value for s in SagaState}:
            raise ValidationError(
                f"unknown state {state!r}; use one of: {', '.join(s.value for s in SagaState)}"
            )
        wanted = None if state is None else SagaState(state)
        found = await self.store.list_instances(state=wanted, workflow_id=workflow_id, limit=limit)
        return [self._describe(self._engine.live.get(i.transaction_id, i)) for i in found]

    async def cancel_workflow(
        self, transaction_id: str, reason: str = "cancelled by request"
    ) -> dict[str, Any]:
        """Stop a running workflow and compensate what completed; it ends ``cancelled``.

        Cancelling a workflow that has already finished changes nothing; the returned status says so
        in its ``message``.
        """
        self._require_started()
        inst = await self._engine.instance(transaction_id)
        if inst.is_terminal:
            status = self._describe(inst)
            status["message"] = f"workflow {transaction_id} already {inst.state.value}; nothing to cancel"
            return status
        inst = await self._engine.call(transaction_id, Cancel(reason))
        status = self._describe(inst)
        status["message"] = f"cancelling workflow {transaction_id}: compensating completed steps"
        return status

    async def retry_compensations(self, transaction_id: str) -> dict[str, Any]:
        """Run the failed compensations of a ``compensation_failed`` workflow again."""
        self._require_started()
        inst = await self._engine.instance(transaction_id)
        if inst.state is not SagaState.COMPENSATION_FAILED:
            raise WorkflowError(
                f"workflow {transaction_id} is {inst.state.value}; only compensation_failed "
                "workflows have compensations to retry",
                transaction_id,
            )
        return self._describe(await self._engine.call(transaction_id, RetryCompensations()))
