"""Where one step's time goes, part by part, outside the event loop's scheduling.

    .venv/bin/python bench/breakdown.py

Drives 2,000 four-step workflows by hand through the same code the engine runs: the machine's
``decide``, the encoding of the stored row, a command's trip through the in-memory bus's JSON, and the
worker side's ``Worker.run``. The SQLite statement and asyncio's own overhead are what remains of a
step's cost in ``bench/run.py``.
"""

from __future__ import annotations

import asyncio
import random
import time

from multiagents import WorkflowBuilder, worker
from multiagents._json import dumps, loads
from multiagents.clock import SystemClock
from multiagents.events import Dispatch, Start
from multiagents.machine import decide, new_instance
from multiagents.messages import Command
from multiagents.store.sql import instance_row

STEPS = 4


@worker("noop")
async def noop(ctx: dict) -> dict:
    return {}


async def main(workflows: int = 2000) -> None:
    b = WorkflowBuilder("bench")
    for i in range(STEPS):
        b.add_step(f"s{i}", noop)
    wf = b.build()
    rng, clock = random.Random(0), SystemClock()
    spent = {"decide": 0.0, "stored row": 0.0, "bus JSON": 0.0, "Worker.run": 0.0}

    def timed(part: str, t0: float) -> None:
        spent[part] += time.perf_counter() - t0

    for i in range(workflows):
        inst = new_instance(wf, f"{i:032x}", {"i": i}, 0.0)
        t0 = time.perf_counter()
        inst, effects = decide(inst, Start(), wf, 1.0, rng)
        timed("decide", t0)
        for _ in range(STEPS):
            cmd = next(e.command for e in effects if isinstance(e, Dispatch))
            t0 = time.perf_counter()
            received = Command.from_dict(loads(dumps(cmd.to_dict())))
            timed("bus JSON", t0)
            t0 = time.perf_counter()
            result = await noop.run(received, clock)
            timed("Worker.run", t0)
            t0 = time.perf_counter()
            inst, effects = decide(inst, result, wf, 2.0, rng)
            timed("decide", t0)
            t0 = time.perf_counter()
            instance_row(inst)
            timed("stored row", t0)
    steps = workflows * STEPS
    print(f"per step, over {steps} steps ({STEPS}-step workflows; decide includes each Start):")
    for part, seconds in spent.items():
        print(f"  {part:<12} {seconds / steps * 1e6:6.1f} µs")
    print(f"  {'total':<12} {sum(spent.values()) / steps * 1e6:6.1f} µs")


if __name__ == "__main__":
    asyncio.run(main())
