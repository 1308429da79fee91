"""The in-process bus: asyncio queues, with every message encoded as JSON as a real bus would.

Encoding keeps the embedded default honest: whatever runs here would cross Redis unchanged, and a
worker can never share mutable objects with the orchestrator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

from multiagents.messages import Command, Result

__all__ = ["MemoryBus"]

_CLOSED = ""


class MemoryBus:
    def __init__(self) -> None:
        self._commands: dict[str, asyncio.Queue[str]] = {}
        self._results: asyncio.Queue[str] = asyncio.Queue()
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
        self._results.put_nowait(_CLOSED)

    async def send_commands(self, commands: Sequence[Command]) -> None:
        for c in commands:
            self._queue(c.worker).put_nowait(json.dumps(c.to_dict(), separators=(",", ":")))

    async def send_result(self, result: Result) -> None:
        self._results.put_nowait(json.dumps(result.to_dict(), separators=(",", ":")))

    def pending(self, worker: str) -> int:
        """Commands waiting for ``worker`` (for tests and tools)."""
        return self._queue(worker).qsize()

    async def receive_commands(self, worker: str) -> AsyncIterator[Command]:
        q = self._queue(worker)
        while True:
            text = await q.get()
            if text == _CLOSED:
                return
            yield Command.from_dict(json.loads(text))

    async def receive_results(self) -> AsyncIterator[list[Result]]:
        q = self._results
        while True:
            texts = [await q.get()]
            while not q.empty():
                texts.append(q.get_nowait())
            batch = [Result.from_dict(json.loads(t)) for t in texts if t != _CLOSED]
            if batch:
                yield batch
            if _CLOSED in texts:
                return
