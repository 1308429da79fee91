"""multiagents: durable sagas for agents, services and plain functions.

Every workflow ends in a known state: completed, undone by its compensations, or flagged for a
person with the reason. Embedded in one process by default (in-memory bus, SQLite store).
"""

from multiagents.clock import Clock, FakeClock, SystemClock
from multiagents.compat import InMemoryEventBus, Orchestrator, WorkerManager
from multiagents.errors import (
    BusError,
    CircuitBreakerOpenError,
    ConcurrencyConflict,
    DefinitionError,
    DefinitionMismatch,
    ErrorCategory,
    ErrorInfo,
    MultiAgentsError,
    RetryableError,
    SerializationError,
    StepFailed,
    StepTimeoutError,
    StoreError,
    StoreLocked,
    UnknownWorkflow,
    ValidationError,
    WorkerExecutionError,
    WorkflowError,
    WorkflowNotFound,
    classify,
)
from multiagents.policy import RetryPolicy, compute_backoff
from multiagents.runtime import Runtime
from multiagents.state import SagaState
from multiagents.worker import StepInfo, Worker, step_info, worker
from multiagents.workflow import Step, WorkflowBuilder, WorkflowDefinition

__version__ = "0.2.0"

__all__ = [
    # errors
    "BusError",
    "CircuitBreakerOpenError",
    # time
    "Clock",
    "ConcurrencyConflict",
    "DefinitionError",
    "DefinitionMismatch",
    "ErrorCategory",
    "ErrorInfo",
    "FakeClock",
    # migrating from the old package
    "InMemoryEventBus",
    "MultiAgentsError",
    "Orchestrator",
    "RetryPolicy",
    "RetryableError",
    # running
    "Runtime",
    "SagaState",
    "SerializationError",
    # workflows
    "Step",
    "StepFailed",
    "StepInfo",
    "StepTimeoutError",
    "StoreError",
    "StoreLocked",
    "SystemClock",
    "UnknownWorkflow",
    "ValidationError",
    # workers
    "Worker",
    "WorkerExecutionError",
    "WorkerManager",
    "WorkflowBuilder",
    "WorkflowDefinition",
    "WorkflowError",
    "WorkflowNotFound",
    "__version__",
    "classify",
    "compute_backoff",
    "step_info",
    "worker",
]
