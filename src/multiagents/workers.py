"""The worker side: takes commands off the bus, runs them, sends results back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from multiagents.bus import Bus
from multiagents.clock import Clock
from multiagents.errors import DefinitionError
from multiagents.messages import DEFAULT_MAX_PAYLOAD, Command
from multiagents.resilience.breaker import BreakerRegistry
from multiagents.worker import Worker

__all__ = ["WorkerPool"]

log = logging.getLogger("multiagents.workers")


class WorkerPool:
    """Runs the registered workers against a bus. Each command runs in its own task."""

    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        workers: Iterable[Worker] = (),
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        breakers: BreakerRegistry | None = None,
    ) -> None:
        self.breakers = breakers
        self.bus = bus
        self.clock = clock
        self.max_payload = max_payload
        self.workers: dict[str, Worker] = {}
        self._consumers: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        for w in workers:
            self.add(w)

    def add(self, w: Worker) -> None:
        if not isinstance(w, Worker):
            raise DefinitionError(f"{w!r} is not a worker; decorate it with @worker(name)")
        existing = self.workers.get(w.name)
        if existing is not None and existing.fn is not w.fn:
            raise DefinitionError(f"two different functions are registered as worker {w.name!r}")
        self.workers[w.name] = w
        if self._consumers:
            self._consumers.append(asyncio.create_task(self._consume(w.name)))

    def start(self) -> None:
        for name in self.workers:
            self._consumers.append(asyncio.create_task(self._consume(name), name=f"worker:{name}"))

    async def stop(self) -> None:
        for t in [*self._consumers, *self._running]:
            t.cancel()
        await asyncio.gather(*self._consumers, *self._running, return_exceptions=True)
        self._consumers.clear()
        self._running.clear()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def _consume(self, name: str) -> None:
        async for command in self.bus.receive_commands(name):
            task = asyncio.create_task(self._run(command))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, command: Command) -> None:
        w = self.workers[command.worker]
        try:
            breaker = None
            if command.circuit_breaker and self.breakers is not None:
                breaker = self.breakers.get(command.circuit_breaker)
            result = await w.run(command, self.clock, self.max_payload, breaker)
            await self.bus.send_result(result)
        except asyncio.CancelledError:
            raise
        except Exception:  # supervisor: the lease will retry this attempt
            log.exception("could not run or report %s", command.attempt_id)
