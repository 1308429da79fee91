"""The old package's Redis event bus import path.

The distributed bus on Redis Streams is not part of this version. The name stays importable so that
code written for the old package fails where it builds the bus, with a sentence saying what to use,
rather than at import time with a bare ModuleNotFoundError.
"""

from __future__ import annotations

from typing import Any

from multiagents.errors import DefinitionError

__all__ = ["RedisEventBus"]


class RedisEventBus:
    """Refuses to be built: a bus that accepted its arguments and carried nothing would lose work."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise DefinitionError(
            "RedisEventBus: the Redis Streams event bus is not available in this version of multiagents; "
            "use the embedded InMemoryEventBus (from multiagents import InMemoryEventBus), which runs "
            "workflows durably on a SQLite store in this process"
        )
