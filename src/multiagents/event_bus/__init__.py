"""The old package's event bus import paths."""

from multiagents.compat import InMemoryEventBus

__all__ = ["InMemoryEventBus"]
