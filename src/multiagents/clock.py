"""Injected time. The engine never reads the wall clock or sleeps except through a Clock."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Iterator
from typing import Protocol, TypeVar

__all__ = ["Clock", "FakeClock", "SystemClock"]

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        """Await ``aw``; raise TimeoutError (cancelling it) if it takes longer than ``timeout``."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def sleep_sync(self, seconds: float) -> None:
        """For sync code (in-process retries of sync functions)."""
        time.sleep(max(seconds, 0.0))

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        # asyncio.timeout, unlike asyncio.wait_for on 3.11, does not wrap the awaitable in a task.
        async with asyncio.timeout(timeout):
            return await aw


class FakeClock:
    """A clock that moves only when told to, for tests that must not sleep for real.

    ``advance(s)`` moves time forward and wakes every sleeper whose time has come, in order.
    ``run_until(aw)`` drives a test to completion with time skipping: whenever the event loop has
    nothing ready to run, time jumps to the next sleeper's deadline (as Temporal's test server does).
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._holds = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Mark work that makes progress off the loop (a thread): time does not skip while held."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    def now(self) -> float:
        return self._now

    def sleep_sync(self, seconds: float) -> None:
        """Sync code's sleep: time moves on at once; async sleepers due by then wake on the next turn."""
        self._now += max(seconds, 0.0)

    @property
    def next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        task = asyncio.ensure_future(aw)
        if timeout is None:
            return await task
        timer = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            timer.cancel()
            raise
        if task.done():
            timer.cancel()
            return task.result()
        task.cancel()
        raise TimeoutError(f"timed out after {timeout}s")

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order.

        Work that is ready now runs first, at the current time, as it would on a real clock.
        """
        await _settle()
        target = self._now + seconds
        while (nxt := self.next_deadline) is not None and nxt <= target:
            self._now = max(self._now, nxt)
            self._wake_due()
            await _settle()
        self._now = target
        await _settle()

    async def run_until(self, aw: Awaitable[T], *, max_jump: float = 10 * 86400.0) -> T:
        """Await ``aw``, skipping time forward whenever nothing else can make progress."""
        task = asyncio.ensure_future(aw)
        while not task.done():
            await _settle()
            if task.done():
                break
            nxt = self.next_deadline
            real = _next_real_timer()
            if nxt is None or self._holds or (real is not None and real <= REAL_HORIZON):
                # Work is in a thread, in real I/O, or in a short real sleep (a worker's
                # `await asyncio.sleep(0.1)`): let it finish in real time before skipping fake time.
                await asyncio.wait({task}, timeout=min(real or 0.005, REAL_HORIZON) + 0.001)
                continue
            if nxt - self._now > max_jump:
                task.cancel()
                raise TimeoutError(f"nothing happened within {max_jump}s of fake time")
            self._now = max(self._now, nxt)
            self._wake_due()
        return task.result()


REAL_HORIZON = 1.0  # real timers due sooner than this are waited for, not skipped


def _next_real_timer() -> float | None:
    """Seconds until the event loop's next real timer (call_later), if it has one."""
    loop = asyncio.get_running_loop()
    scheduled = getattr(loop, "_scheduled", None)  # CPython's timer heap; absent on other loops
    if not scheduled:
        return None
    live = [h.when() for h in scheduled if not h.cancelled()]
    return max(min(live) - loop.time(), 0.0) if live else None


async def _settle(rounds: int = 200) -> None:
    """Let every ready callback run until the loop has nothing left to do right now."""
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        await asyncio.sleep(0)
        ready = getattr(loop, "_ready", None)  # CPython's run queue; absent on other loops
        if ready is not None and not ready:
            # Give one more turn: a callback may have scheduled work for the next iteration.
            await asyncio.sleep(0)
            if not ready:
                return
