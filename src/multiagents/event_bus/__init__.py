"""The old package's event bus import paths."""

from multiagents.compat import InMemoryEventBus
from multiagents.event_bus.redis_bus import RedisEventBus

__all__ = ["InMemoryEventBus", "RedisEventBus"]
