"""Buses carry commands to workers and results back. A bus is a small Protocol; pick one by URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from multiagents.errors import DefinitionError
from multiagents.messages import Command, Result

__all__ = ["Bus", "open_bus"]


@runtime_checkable
class Bus(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send_commands(self, commands: Sequence[Command]) -> None: ...

    async def send_result(self, result: Result) -> None: ...

    def receive_commands(self, worker: str) -> AsyncIterator[Command]:
        """Commands for one worker name, as they arrive, until the bus closes."""
        ...

    def receive_results(self) -> AsyncIterator[list[Result]]:
        """Results in batches (whatever has arrived), until the bus closes."""
        ...


def open_bus(url: str) -> Bus:
    if url in ("memory://", "memory"):
        from multiagents.bus.memory import MemoryBus

        return MemoryBus()
    scheme = url.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        raise DefinitionError("the Redis bus is not available in this version; use memory://")
    raise DefinitionError(f"unknown bus URL {url!r}; use memory://")
