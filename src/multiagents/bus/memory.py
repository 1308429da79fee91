"""The in-process bus: asyncio queues; commands are encoded as JSON as a real bus would.

Encoding keeps the embedded default honest: whatever runs here would cross Redis unchanged, and a
worker can never share mutable objects with the orchestrator. Results are passed as they are: the
worker has already checked the output as strict JSON and parsed it back into fresh objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from multiagents._json import dumps, loads
from multiagents.messages import Command, Result

__all__ = ["MemoryBus"]

_CLOSED = ""


class MemoryBus:
    def __init__(self) -> None:
        self._commands: dict[str, asyncio.Queue[str]] = {}
        self._results: asyncio.Queue[Result | None] = asyncio.Queue()
        self._closed = False

    def _queue(self, worker: str) -> asyncio.Queue[str]:
        q = self._commands.get(worker)
        if q is None:
            q = self._commands[worker] = asyncio.Queue()
        return q

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for q in self._commands.values():
            q.put_nowait(_CLOSED)
        self._results.put_nowait(None)

    async def send_commands(self, commands: Sequence[Command]) -> None:
        for c in commands:
            self._queue(c.worker).put_nowait(dumps(c.to_dict()))

    async def send_result(self, result: Result) -> None:
        self._results.put_nowait(result)

    def pending(self, worker: str) -> int:
        """Commands waiting for ``worker`` (for tests and tools)."""
        return self._queue(worker).qsize()

    async def receive_commands(self, worker: str) -> AsyncIterator[Command]:
        q = self._queue(worker)
        while True:
            text = await q.get()
            if text == _CLOSED:
                return
            yield Command.from_dict(loads(text))

    async def receive_results(self) -> AsyncIterator[list[Result]]:
        q = self._results
        while True:
            items = [await q.get()]
            while not q.empty():
                items.append(q.get_nowait())
            batch = [r for r in items if r is not None]
            if batch:
                yield batch
            if len(batch) < len(items):
                return
