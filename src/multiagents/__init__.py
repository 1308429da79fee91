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
from multiagents.resilience import (
    BreakerRegistry,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    retry,
    retry_on_failure,
    retrying,
)
from multiagents.runtime import Runtime
from multiagents.state import SagaState
from multiagents.tracking import ErrorTracker
from multiagents.validation import schema_model, validate
from multiagents.worker import StepInfo, Worker, step_info, worker
from multiagents.workflow import Step, WorkflowBuilder, WorkflowDefinition

__version__ = "0.2.0"

__all__ = [
    "__version__",
    # workers and workflows
    "Step",
    "StepInfo",
    "Worker",
    "WorkflowBuilder",
    "WorkflowDefinition",
    "step_info",
    "worker",
    # running
    "Runtime",
    "SagaState",
    # policies and resilience
    "BreakerRegistry",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitState",
    "RetryPolicy",
    "compute_backoff",
    "retry",
    "retry_on_failure",
    "retrying",
    # validation and error tracking
    "ErrorTracker",
    "schema_model",
    "validate",
    # time
    "Clock",
    "FakeClock",
    "SystemClock",
    # errors
    "BusError",
    "CircuitBreakerOpenError",
    "ConcurrencyConflict",
    "DefinitionError",
    "DefinitionMismatch",
    "ErrorCategory",
    "ErrorInfo",
    "MultiAgentsError",
    "RetryableError",
    "SerializationError",
    "StepFailed",
    "StepTimeoutError",
    "StoreError",
    "StoreLocked",
    "UnknownWorkflow",
    "ValidationError",
    "WorkerExecutionError",
    "WorkflowError",
    "WorkflowNotFound",
    "classify",
    # migrating from the old package
    "InMemoryEventBus",
    "Orchestrator",
    "WorkerManager",
]
