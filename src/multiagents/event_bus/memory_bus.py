"""The old package's in-memory event bus import path."""

from multiagents.compat import InMemoryEventBus

__all__ = ["InMemoryEventBus"]
