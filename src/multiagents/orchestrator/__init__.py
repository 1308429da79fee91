"""The old package's orchestrator import paths: the objects of :mod:`multiagents.compat` and the builder."""

from multiagents.compat import Orchestrator
from multiagents.workflow import WorkflowBuilder

__all__ = ["Orchestrator", "WorkflowBuilder"]
