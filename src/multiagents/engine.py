"""The orchestrator shell around the pure machine: inbox, group commit, dispatch, timers.

One task owns every instance this engine drives. It takes whatever events have arrived (results,
due timers, API calls), runs ``decide`` for each, writes all the resulting transitions to the store
in one transaction, and only then sends the commands and wakes waiters. Batching the commit is what
lets one SQLite file carry thousands of steps a second; each transition is still all-or-nothing.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from multiagents.bus import Bus
from multiagents.clock import Clock
from multiagents.errors import (
    DefinitionMismatch,
    ErrorCategory,
    ErrorInfo,
    MultiAgentsError,
    WorkflowNotFound,
)
from multiagents.machine import Dispatch, Event, Finish, RecordError, Resume, Start, Tick, decide
from multiagents.messages import Command, Result
from multiagents.resilience.breaker import BreakerRegistry
from multiagents.resilience.circuit import _seconds
from multiagents.state import SagaState, WorkflowInstance
from multiagents.store import Store, Transition
from multiagents.tracking import ErrorTracker
from multiagents.workflow import WorkflowDefinition

__all__ = ["Engine"]

log = logging.getLogger("multiagents.engine")

MAX_BATCH = 1024
PRUNE_EVERY = 1000  # error records written between two applications of the retention bounds


@dataclass(slots=True)
class _Call:
    transaction_id: str
    event: Event
    reply: asyncio.Future[WorkflowInstance] | None = None
    new: WorkflowInstance | None = None  # for Start: the instance to create


class Engine:
    def __init__(
        self,
        definitions: Mapping[str, WorkflowDefinition],
        store: Store,
        bus: Bus,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.definitions = dict(definitions)
        self.store = store
        self.bus = bus
        self.clock = clock
        self.rng = rng
        self.live: dict[str, WorkflowInstance] = {}  # every unfinished instance this engine owns
        self.blocked: dict[str, str] = {}  # unfinished instances it cannot drive, and why
        self._inbox: asyncio.Queue[list[_Call]] = asyncio.Queue()
        self._waiters: dict[str, list[asyncio.Future[WorkflowInstance]]] = {}
        self._timers: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        self._timer_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.errors_since_prune = 0
        self.tracker: ErrorTracker | None = None
        self.breakers: BreakerRegistry | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> int:
        """Adopt every unfinished instance in the store and start driving them; returns how many."""
        resumed = 0
        calls = []
        for inst in await self.store.unfinished():
            defn = self.definitions.get(inst.workflow_id)
            if defn is None:
                self.blocked[inst.transaction_id] = (
                    f"no workflow named {inst.workflow_id!r} is registered with this Runtime"
                )
            elif defn.fingerprint != inst.fingerprint:
                self.blocked[inst.transaction_id] = str(
                    DefinitionMismatch(
                        f"workflow {inst.transaction_id} was started under another definition of "
                        f"{inst.workflow_id!r} (fingerprint {inst.fingerprint}, now "
                        f"{defn.fingerprint}); run it with the definition it started with",
                        inst.transaction_id,
                    )
                )
            else:
                self.live[inst.transaction_id] = inst
                # A retry that is not due yet changes nothing on Resume or Tick, so arm its timer here.
                self._schedule(inst.transaction_id, inst.wake_at)
                calls += [_Call(inst.transaction_id, Resume()), _Call(inst.transaction_id, Tick())]
                resumed += 1
        for tid, why in self.blocked.items():
            log.error("workflow %s is not resumed: %s", tid, why)
        self._tasks = [
            asyncio.create_task(self._run(), name="multiagents-engine"),
            asyncio.create_task(self._pump_results(), name="multiagents-results"),
            asyncio.create_task(self._fire_timers(), name="multiagents-timers"),
        ]
        if calls:
            self._inbox.put_nowait(calls)
        return resumed

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for tid, futures in self._waiters.items():
            for f in futures:
                if not f.done():
                    why = f"the runtime stopped before workflow {tid} finished; it resumes at the next start"
                    f.set_exception(MultiAgentsError(why))
        self._waiters.clear()

    # ---- API ------------------------------------------------------------------------------------

    async def call(
        self, transaction_id: str, event: Event, new: WorkflowInstance | None = None
    ) -> WorkflowInstance:
        """Run ``event`` through the loop; returns the instance once the transition is stored."""
        if new is None and transaction_id not in self.live:
            inst = await self.store.load(transaction_id)
            if inst is None:
                raise WorkflowNotFound(f"no workflow with transaction id {transaction_id!r}", transaction_id)
            if transaction_id in self.blocked or not self._tasks:
                raise MultiAgentsError(self.blocked.get(transaction_id, "the runtime is not running"))
        fut: asyncio.Future[WorkflowInstance] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait([_Call(transaction_id, event, fut, new)])
        return await fut

    async def instance(self, transaction_id: str) -> WorkflowInstance:
        inst = self.live.get(transaction_id) or await self.store.load(transaction_id)
        if inst is None:
            raise WorkflowNotFound(f"no workflow with transaction id {transaction_id!r}", transaction_id)
        return inst

    async def wait(self, transaction_id: str) -> WorkflowInstance:
        """The instance once it is terminal. Raises if this engine cannot drive it there."""
        inst = self.live.get(transaction_id)
        if inst is None:
            # Not driven here: finished already, blocked, or unknown (no await happens between the
            # check of `live` above and registering the waiter below when it is driven here).
            inst = await self.instance(transaction_id)
            if inst.is_terminal:
                return inst
            raise MultiAgentsError(
                self.blocked.get(transaction_id)
                or f"workflow {transaction_id} is {inst.state.value} but this runtime is not driving it"
            )
        if inst.is_terminal:
            return inst
        fut: asyncio.Future[WorkflowInstance] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(transaction_id, []).append(fut)
        return await fut

    # ---- the loop -------------------------------------------------------------------------------

    async def _pump_results(self) -> None:
        async for batch in self.bus.receive_results():
            self._inbox.put_nowait([_Call(r.transaction_id, r) for r in batch])

    async def _run(self) -> None:
        while True:
            calls = await self._inbox.get()
            while len(calls) < MAX_BATCH and not self._inbox.empty():
                calls.extend(self._inbox.get_nowait())
            try:
                await self._process(calls)
                if self.tracker is not None and self.errors_since_prune >= min(
                    PRUNE_EVERY, self.tracker.max_errors
                ):
                    self.errors_since_prune = 0
                    await self.tracker.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # supervisor: report to callers, keep the loop alive
                log.exception("engine batch of %d events failed", len(calls))
                for c in calls:
                    if c.reply is not None and not c.reply.done():
                        c.reply.set_exception(exc)

    async def _process(self, calls: list[_Call]) -> None:
        now = self.clock.now()
        before: dict[str, WorkflowInstance | None] = {}
        changed: dict[str, WorkflowInstance] = {}
        commands: dict[str, list[Command]] = {}
        errors: dict[str, list[dict[str, Any]]] = {}
        finished: list[str] = []
        replies: list[tuple[asyncio.Future[WorkflowInstance], str]] = []
        for c in calls:
            tid = c.transaction_id
            inst = self.live.get(tid) or c.new
            if inst is None:
                inst = await self._finished(c)
                if inst is None:
                    continue
            defn = self.definitions[inst.workflow_id]
            if tid not in before:
                before[tid] = None if inst is c.new else inst
            try:
                new, effects = decide(inst, c.event, defn, now, self.rng)
            except Exception as exc:  # a bug must not strand the workflow, nor the rest of the batch
                log.exception("deciding %s for workflow %s failed", type(c.event).__name__, tid)
                new, effects = _needs_attention(inst, exc, now), [Finish(SagaState.COMPENSATION_FAILED)]
                if c.reply is not None and not c.reply.done():
                    c.reply.set_exception(exc)
            if new is not inst:
                self.live[tid] = changed[tid] = new
            for e in effects:
                if isinstance(e, Dispatch):
                    commands.setdefault(tid, []).append(e.command)
                elif isinstance(e, Finish):
                    finished.append(tid)
                elif isinstance(e, RecordError):
                    errors.setdefault(tid, []).append(e.record)
            if c.reply is not None:
                replies.append((c.reply, tid))
        if changed:
            transitions = [
                Transition(
                    inst,
                    0 if before[tid] is None else before[tid].version,  # type: ignore[union-attr]
                    tuple(commands.get(tid, ())),
                    tuple(errors.get(tid, ())),
                )
                for tid, inst in changed.items()
            ]
            try:
                await self.store.commit(transitions)
            except BaseException:
                # Nothing was stored: forget what was decided. Results are lost, but every attempt
                # they belonged to still has its lease, so it is retried, not stranded.
                for tid, old in before.items():
                    if old is None or old.is_terminal:
                        self.live.pop(tid, None)
                    else:
                        self.live[tid] = old
                    # The timer that brought this event may have fired already: arm it again.
                    self._scheduled.pop(tid, None)
                    self._schedule(tid, None if old is None else old.wake_at)
                raise
        self.errors_since_prune += sum(len(e) for e in errors.values())
        # The transitions are stored: whatever happens while sending, the timers are armed and the callers
        # answered, so a lost command is caught by its lease instead of stranding the workflow.
        try:
            await self._send([cmd for cmds in commands.values() for cmd in cmds], now)
        except Exception:
            log.exception("sending commands failed; their leases will retry them")
        for tid, inst in changed.items():
            self._schedule(tid, inst.wake_at)
        for fut, tid in replies:
            if not fut.done():
                fut.set_result(self.live[tid])
        for tid in finished:
            inst = self.live.pop(tid)
            self._scheduled.pop(tid, None)
            for fut in self._waiters.pop(tid, ()):
                if not fut.done():
                    fut.set_result(inst)
        # Finished instances looked at through call() were cached only for the call.
        for tid in before:
            inst_now = self.live.get(tid)
            if inst_now is not None and inst_now.is_terminal:
                self.live.pop(tid, None)

    async def _finished(self, c: _Call) -> WorkflowInstance | None:
        """The stored instance an event for a workflow not driven here is about, if the machine may see it.

        Finished instances are not kept in memory, yet a straggling result must still be recorded in their
        history and a call on them must still be answered. Blocked or unknown ones are answered with why.
        """
        tid = c.transaction_id
        problem: MultiAgentsError | None = None
        inst = None if tid in self.blocked else await self.store.load(tid)
        if tid in self.blocked:
            problem = MultiAgentsError(self.blocked[tid])
        elif inst is None:
            problem = WorkflowNotFound(f"no workflow with transaction id {tid!r}", tid)
        else:
            defn = self.definitions.get(inst.workflow_id)
            if not inst.is_terminal or defn is None or defn.fingerprint != inst.fingerprint:
                problem = MultiAgentsError(f"workflow {tid} is not driven by this runtime")
        if problem is not None or inst is None:
            if c.reply is not None and not c.reply.done():
                c.reply.set_exception(problem or MultiAgentsError(f"workflow {tid} is unavailable"))
            return None
        self.live[tid] = inst  # for this batch only: finished instances are dropped again at its end
        return inst

    async def _release_probes(self, unsent: list[Command]) -> None:
        """Commands that were let through a half-open breaker but never sent give their slot back."""
        if self.breakers is not None:
            registry = self.breakers
            await asyncio.gather(
                *(
                    registry.get(c.circuit_breaker).release(probe=c.probe)
                    for c in unsent
                    if c.circuit_breaker
                ),
                return_exceptions=True,
            )

    async def _send(self, sends: list[Command], now: float) -> None:
        if self.breakers is not None and any(c.circuit_breaker for c in sends):
            sends = await self._gate(sends, now)
        if sends:
            try:
                await self.bus.send_commands(sends)
            except BaseException:
                await self._release_probes(sends)
                raise

    async def _gate(self, commands: list[Command], now: float) -> list[Command]:
        """Hold back commands whose circuit breaker is open: they are parked, not sent.

        The refusal goes back through the machine as a circuit_open result, which parks the step until
        the breaker half-opens without spending one of its attempts.
        """
        assert self.breakers is not None
        registry = self.breakers
        guarded = [c for c in commands if c.circuit_breaker]
        answers = await asyncio.gather(
            *(registry.get(c.circuit_breaker or "").admit() for c in guarded), return_exceptions=True
        )
        refused: dict[str, float] = {}
        probes: dict[str, bool] = {}
        for c, answer in zip(guarded, answers, strict=True):
            if isinstance(answer, BaseException):
                # The breaker's state cannot be read: fail open, so a store hiccup does not stop the work.
                log.warning(
                    "circuit breaker %r unreadable (%s); sending %s", c.circuit_breaker, answer, c.step
                )
            elif answer.retry_after is not None:
                refused[c.attempt_id] = answer.retry_after
            else:
                probes[c.attempt_id] = answer.probe
        # The worker tells the breaker whether its call was the probe: only probes decide a half-open one.
        commands = [replace(c, probe=probes[c.attempt_id]) if c.attempt_id in probes else c for c in commands]
        if not refused:
            return commands
        results = [
            Result(
                transaction_id=c.transaction_id,
                step=c.step,
                kind=c.kind,
                attempt_id=c.attempt_id,
                output=None,
                error=ErrorInfo(
                    ErrorCategory.CIRCUIT_OPEN,
                    f"circuit breaker {c.circuit_breaker!r} refuses calls (open, or its half-open "
                    f"probes are busy): step {c.step!r} is parked for {_seconds(refused[c.attempt_id])}",
                    "CircuitBreakerOpenError",
                    retryable=True,
                    retry_after=refused[c.attempt_id],
                    types=("multiagents.errors.CircuitBreakerOpenError",),
                ),
                started_at=now,
                finished_at=now,
            )
            for c in commands
            if c.attempt_id in refused
        ]
        self._inbox.put_nowait([_Call(r.transaction_id, r) for r in results])
        return [c for c in commands if c.attempt_id not in refused]

    # ---- timers ---------------------------------------------------------------------------------

    def _schedule(self, tid: str, wake_at: float | None) -> None:
        if wake_at is None:
            self._scheduled.pop(tid, None)
            return
        if self._scheduled.get(tid) == wake_at:
            return
        earliest = self._timers[0][0] if self._timers else None
        self._scheduled[tid] = wake_at
        heapq.heappush(self._timers, (wake_at, tid))
        if len(self._timers) > 2 * len(self._scheduled) + 1024:
            # Drop stale entries so the heap stays proportional to the live instances.
            self._timers = [(w, t) for t, w in self._scheduled.items()]
            heapq.heapify(self._timers)
        if earliest is None or wake_at < earliest:
            self._timer_changed.set()

    async def _fire_timers(self) -> None:
        while True:
            now = self.clock.now()
            due: list[_Call] = []
            while self._timers and self._timers[0][0] <= now:
                wake_at, tid = heapq.heappop(self._timers)
                if self._scheduled.get(tid) == wake_at:
                    due.append(_Call(tid, Tick()))
            if due:
                self._inbox.put_nowait(due)
            self._timer_changed.clear()
            delay = self._timers[0][0] - now if self._timers else None
            waiter = asyncio.ensure_future(self._timer_changed.wait())
            sleeper = asyncio.ensure_future(self.clock.sleep(delay)) if delay is not None else None
            try:
                await asyncio.wait(
                    [f for f in (waiter, sleeper) if f is not None],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
                if sleeper is not None:
                    sleeper.cancel()

    def start_instance(self, inst: WorkflowInstance) -> asyncio.Future[WorkflowInstance]:
        fut: asyncio.Future[WorkflowInstance] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait([_Call(inst.transaction_id, Start(), fut, inst)])
        return fut

    def describe_blocked(self) -> dict[str, Any]:
        return dict(self.blocked)


def _needs_attention(inst: WorkflowInstance, exc: Exception, now: float) -> WorkflowInstance:
    """Flag an instance the machine could not decide on, so a person sees it instead of it hanging."""
    flagged = inst.clone()
    flagged.state = SagaState.COMPENSATION_FAILED
    flagged.error = {
        "category": "internal",
        "message": f"the engine could not decide this workflow's next step: {type(exc).__name__}: {exc}",
        "step": None,
        "previous_error": inst.error,
    }
    flagged.version = inst.version + 1
    flagged.updated_at = now
    return flagged
