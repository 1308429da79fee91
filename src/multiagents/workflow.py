"""The workflow DSL: ``WorkflowBuilder`` builds an immutable, validated ``WorkflowDefinition``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from pydantic import BaseModel

from multiagents.errors import DefinitionError
from multiagents.policy import (
    DEFAULT_COMPENSATION_POLICY,
    DEFAULT_RETRY_POLICY,
    Duration,
    RetryPolicy,
    seconds,
)
from multiagents.worker import Worker

__all__ = ["Conditional", "Parallel", "Step", "WorkflowBuilder", "WorkflowDefinition"]

DEFAULT_STEP_TIMEOUT = 300.0
WorkerRef: TypeAlias = "str | Worker"
Condition: TypeAlias = "Callable[[dict[str, Any]], Any] | str"
_UNSET: Any = object()


def _ref_name(ref: Any, what: str) -> str:
    if isinstance(ref, Worker):
        return ref.name
    if isinstance(ref, str) and ref.strip():
        return ref
    raise DefinitionError(f"{what} must be a worker name or a @worker function, got {ref!r}")


def _callable_name(fn: Any) -> str:
    if isinstance(fn, str):
        return fn
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@dataclass(frozen=True, slots=True)
class Step:
    """One step: a worker to run and, optionally, the worker that undoes it.

    ``timeout`` bounds one attempt (default 300 s, or the worker's own); ``retry_policy`` defaults
    to the worker's, then to ``RetryPolicy()``. ``fail_if(output)`` returning true turns a returned
    dict into a business failure (the seed's workers report "insufficient_inventory" that way).
    Compensations have their own ``compensation_retry_policy``, more patient by default.
    """

    name: str
    worker: WorkerRef
    compensation: WorkerRef | None = None
    timeout: Duration | None = None
    retry_policy: RetryPolicy | Mapping[str, Any] | None = None
    fail_if: Callable[[dict[str, Any]], Any] | None = None
    compensation_timeout: Duration | None = None
    compensation_retry_policy: RetryPolicy | Mapping[str, Any] | None = None
    circuit_breaker: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DefinitionError(f"a step needs a non-empty name, got {self.name!r}")
        _ref_name(self.worker, f"step {self.name!r} worker")
        if self.compensation is not None:
            _ref_name(self.compensation, f"step {self.name!r} compensation")
        for what in ("timeout", "compensation_timeout"):
            value = seconds(getattr(self, what), f"step {self.name!r} {what}", allow_none=True)
            if value == 0:
                raise DefinitionError(f"step {self.name!r} {what} must be > 0")
            object.__setattr__(self, what, value)
        for what in ("retry_policy", "compensation_retry_policy"):
            policy = RetryPolicy.coerce(getattr(self, what), f"step {self.name!r} {what}")
            object.__setattr__(self, what, policy)
        if self.fail_if is not None and not callable(self.fail_if):
            raise DefinitionError(f"step {self.name!r} fail_if must be callable on the output")

    @property
    def worker_name(self) -> str:
        return _ref_name(self.worker, "worker")

    @property
    def compensation_name(self) -> str | None:
        return None if self.compensation is None else _ref_name(self.compensation, "compensation")

    def effective_timeout(self, kind_compensate: bool = False) -> float:
        """Seconds one attempt may take: the step's option, else its worker's, else 300 s.

        A compensation uses ``compensation_timeout``, else its own worker's declared timeout, and only
        then the step's ``timeout`` (which was chosen for a different worker).
        """
        if kind_compensate:
            if self.compensation_timeout is not None:
                return float(self.compensation_timeout)  # type: ignore[arg-type]
            if isinstance(self.compensation, Worker) and self.compensation.timeout is not None:
                return self.compensation.timeout
        if self.timeout is not None:
            return float(self.timeout)  # type: ignore[arg-type]
        if not kind_compensate and isinstance(self.worker, Worker) and self.worker.timeout is not None:
            return self.worker.timeout
        return DEFAULT_STEP_TIMEOUT

    def breaker_name(self, kind_compensate: bool = False) -> str | None:
        """The circuit breaker guarding this step's worker (or its compensation's), if any."""
        if not kind_compensate and self.circuit_breaker:
            return self.circuit_breaker
        ref = self.compensation if kind_compensate else self.worker
        return ref.circuit_breaker if isinstance(ref, Worker) else None

    def effective_policy(self, kind_compensate: bool = False) -> RetryPolicy:
        if kind_compensate:
            own = self.compensation_retry_policy
            ref = self.compensation
            fallback = DEFAULT_COMPENSATION_POLICY
        else:
            own, ref, fallback = self.retry_policy, self.worker, DEFAULT_RETRY_POLICY
        if isinstance(own, RetryPolicy):
            return own
        if isinstance(ref, Worker) and ref.retry_policy is not None:
            return ref.retry_policy
        return fallback

    def bind(self, workers: Mapping[str, Worker]) -> Step:
        """Resolve worker names to registered workers, so their default timeout and policy apply."""
        changes: dict[str, Any] = {}
        if isinstance(self.worker, str) and self.worker in workers:
            changes["worker"] = workers[self.worker]
        if isinstance(self.compensation, str) and self.compensation in workers:
            changes["compensation"] = workers[self.compensation]
        return replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "step",
            "name": self.name,
            "worker": self.worker_name,
            "compensation": self.compensation_name,
            "timeout": self.effective_timeout(),
            "retry_policy": self.effective_policy().to_dict(),
            "compensation_retry_policy": self.effective_policy(True).to_dict(),
            "fail_if": _callable_name(self.fail_if) if self.fail_if else None,
            "circuit_breaker": self.circuit_breaker,
        }

    def shape(self) -> list[Any]:
        return ["step", self.name, self.worker_name, self.compensation_name]


def _as_step(value: Any, what: str) -> Step:
    if isinstance(value, Step):
        return value
    if isinstance(value, Mapping):
        try:
            return Step(**value)
        except TypeError as exc:
            raise DefinitionError(f"{what}: {exc}") from None
    raise DefinitionError(f"{what} must be a Step or a dict of Step arguments, got {value!r}")


def _as_path(value: Any, what: str) -> tuple[Step, ...]:
    if value is None:
        return ()
    if isinstance(value, Step | Mapping):
        return (_as_step(value, what),)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(_as_step(v, f"{what}[{i}]") for i, v in enumerate(value))
    raise DefinitionError(f"{what} must be a Step, a dict, or a list of them, got {value!r}")


@dataclass(frozen=True, slots=True)
class Parallel:
    """Branches that run concurrently; their outputs merge in declaration order."""

    name: str
    branches: tuple[Step, ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.branches

    def shape(self) -> list[Any]:
        return ["parallel", self.name, [s.shape() for s in self.branches]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "parallel",
            "name": self.name,
            "branches": [s.to_dict() for s in self.branches],
        }


@dataclass(frozen=True, slots=True)
class Conditional:
    """Runs ``true_path`` or ``false_path`` depending on ``condition`` evaluated on the context.

    ``condition`` is a callable on the merged context or a dotted path into it
    (``"payment.approved"``); a missing key counts as false.
    """

    name: str
    condition: Condition
    true_path: tuple[Step, ...]
    false_path: tuple[Step, ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.true_path + self.false_path

    def evaluate(self, context: dict[str, Any]) -> bool:
        if isinstance(self.condition, str):
            value: Any = context
            for part in self.condition.split("."):
                if not isinstance(value, Mapping) or part not in value:
                    return False
                value = value[part]
            return bool(value)
        return bool(self.condition(context))

    def shape(self) -> list[Any]:
        return [
            "conditional",
            self.name,
            _callable_name(self.condition),
            [s.shape() for s in self.true_path],
            [s.shape() for s in self.false_path],
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "conditional",
            "name": self.name,
            "condition": _callable_name(self.condition),
            "true_path": [s.to_dict() for s in self.true_path],
            "false_path": [s.to_dict() for s in self.false_path],
        }


Node: TypeAlias = "Step | Parallel | Conditional"


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """An immutable, validated workflow. Build it with :class:`WorkflowBuilder`."""

    id: str
    nodes: tuple[Node, ...]
    input_model: type[BaseModel] | None = None
    steps: Mapping[str, Step] = field(init=False)
    order: tuple[str, ...] = field(init=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        steps: dict[str, Step] = {}
        for node in self.nodes:
            for step in (node,) if isinstance(node, Step) else node.steps:
                steps[step.name] = step
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "order", tuple(steps))
        shape = json.dumps([self.id, [n.shape() for n in self.nodes]], separators=(",", ":"))
        object.__setattr__(self, "fingerprint", hashlib.sha256(shape.encode()).hexdigest()[:16])

    def get_id(self) -> str:
        """The old package's accessor."""
        return self.id

    @property
    def worker_names(self) -> set[str]:
        names = {s.worker_name for s in self.steps.values()}
        names |= {s.compensation_name for s in self.steps.values() if s.compensation_name}
        return names

    @property
    def worker_objects(self) -> list[Worker]:
        found = []
        for s in self.steps.values():
            found += [r for r in (s.worker, s.compensation) if isinstance(r, Worker)]
        return found

    def bind(self, workers: Mapping[str, Worker]) -> WorkflowDefinition:
        """A copy whose steps refer to the registered worker objects (same fingerprint)."""

        def bind_node(node: Node) -> Node:
            if isinstance(node, Step):
                return node.bind(workers)
            if isinstance(node, Parallel):
                return Parallel(node.name, tuple(s.bind(workers) for s in node.branches))
            return Conditional(
                node.name,
                node.condition,
                tuple(s.bind(workers) for s in node.true_path),
                tuple(s.bind(workers) for s in node.false_path),
            )

        return WorkflowDefinition(self.id, tuple(bind_node(n) for n in self.nodes), self.input_model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "input_model": self.input_model.__name__ if self.input_model else None,
            "nodes": [n.to_dict() for n in self.nodes],
        }


class WorkflowBuilder:
    """Fluent builder: ``WorkflowBuilder("order").add_step(...).add_parallel(...).build()``."""

    def __init__(self, workflow_id: str, *, input_model: type[BaseModel] | None = None) -> None:
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise DefinitionError(f"a workflow needs a non-empty id, got {workflow_id!r}")
        if input_model is not None and not (
            isinstance(input_model, type) and issubclass(input_model, BaseModel)
        ):
            raise DefinitionError(f"workflow {workflow_id!r}: input_model must be a pydantic model")
        self._id = workflow_id
        self._input_model = input_model
        self._nodes: list[Node] = []

    def add_step(
        self,
        name: str,
        worker: WorkerRef,
        compensation: WorkerRef | None = None,
        timeout: Duration | None = _UNSET,
        retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        fail_if: Callable[[dict[str, Any]], Any] | None = None,
        **options: Any,
    ) -> WorkflowBuilder:
        """Append a step. ``timeout`` defaults to 300 s unless the worker declares its own."""
        try:
            step = Step(
                name,
                worker,
                compensation,
                timeout=None if timeout is _UNSET else timeout,
                retry_policy=retry_policy,
                fail_if=fail_if,
                **options,
            )
        except TypeError:
            accepted = sorted(f for f in Step.__dataclass_fields__ if f not in ("name", "worker"))
            unknown = sorted(set(options) - set(accepted))
            raise DefinitionError(
                f"add_step({name!r}) got unknown options {unknown}; it takes {', '.join(accepted)}"
            ) from None
        self._nodes.append(step)
        return self

    def add_parallel(self, name: str, steps: Sequence[Step | Mapping[str, Any]]) -> WorkflowBuilder:
        """Append a group of steps that run concurrently; the flow goes on when all complete."""
        branches = _as_path(steps, f"add_parallel({name!r})")
        if not branches:
            raise DefinitionError(f"add_parallel({name!r}) needs at least one step")
        self._nodes.append(Parallel(name, branches))
        return self

    def add_conditional(
        self,
        condition: Condition,
        true_path: Step | Mapping[str, Any] | Sequence[Step | Mapping[str, Any]] | None,
        false_path: Step | Mapping[str, Any] | Sequence[Step | Mapping[str, Any]] | None = None,
        *,
        name: str | None = None,
    ) -> WorkflowBuilder:
        """Append a branch point: the chosen path runs, the other's steps are recorded as skipped."""
        label = name or f"conditional_{len(self._nodes) + 1}"
        if not (callable(condition) or (isinstance(condition, str) and condition.strip())):
            raise DefinitionError(
                f"{label}: condition must be a callable on the context or a dotted path, got {condition!r}"
            )
        true_steps = _as_path(true_path, f"{label} true_path")
        false_steps = _as_path(false_path, f"{label} false_path")
        if not true_steps and not false_steps:
            raise DefinitionError(f"{label}: both paths are empty")
        self._nodes.append(Conditional(label, condition, true_steps, false_steps))
        return self

    def build(self) -> WorkflowDefinition:
        if not self._nodes:
            raise DefinitionError(f"workflow {self._id!r} has no steps")
        seen: set[str] = set()
        for node in self._nodes:
            names = [node.name] if isinstance(node, Step) else [node.name, *(s.name for s in node.steps)]
            for n in names:
                if n in seen:
                    raise DefinitionError(f"workflow {self._id!r}: the name {n!r} is used twice")
                seen.add(n)
        return WorkflowDefinition(self._id, tuple(self._nodes), self._input_model)
