"""The old package's ``multiagents.orchestrator.workflow`` import path."""

from multiagents.workflow import Step, WorkflowBuilder, WorkflowDefinition

__all__ = ["Step", "WorkflowBuilder", "WorkflowDefinition"]
