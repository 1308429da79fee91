"""The old package's worker import path: ``from multiagents.worker_sdk import worker, WorkerManager``."""

from multiagents.compat import WorkerManager
from multiagents.worker import worker

__all__ = ["WorkerManager", "worker"]
