"""Throughput and latency of the embedded default (memory bus + SQLite store), with a baseline.

    python3 dev.py bench [--workflows 500] [--latency-runs 300]

Prints steps/s for N concurrent 4-step no-op workflows, the latency of one unloaded 4-step workflow,
and the same machine's "bare floor": an asyncio queue plus one SQLite commit per step, so the figures
can be compared as a ratio measured in the same run (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from multiagents import Runtime, WorkflowBuilder, worker
from multiagents.store import Transition
from multiagents.store.sqlite import SQLiteStore

STEPS = 4


@worker("noop")
async def noop(ctx: dict) -> dict:
    return {}


def workflow():
    b = WorkflowBuilder("bench")
    for i in range(STEPS):
        b.add_step(f"s{i}", noop)
    return b.build()


class OneCommitPerTransition(SQLiteStore):
    """The ablation of group commit: every transition of a batch in a transaction of its own."""

    async def commit(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            await super().commit([t])


async def throughput(path: str, n: int, *, group_commit: bool = True) -> float:
    store = f"sqlite:///{path}" if group_commit else OneCommitPerTransition(path)
    async with Runtime(workflows=[workflow()], store=store) as rt:
        await rt.run("bench", {})  # warm up
        t0 = time.perf_counter()
        tids = await asyncio.gather(*(rt.execute_workflow("bench", {"i": i}) for i in range(n)))
        for tid in tids:
            status = await rt.wait(tid)
            assert status["state"] == "completed", status["state"]
        elapsed = time.perf_counter() - t0
    return n * STEPS / elapsed


async def latency(path: str, runs: int) -> list[float]:
    out = []
    async with Runtime(workflows=[workflow()], store=f"sqlite:///{path}") as rt:
        for _ in range(20):
            await rt.run("bench", {})
        for _ in range(runs):
            t0 = time.perf_counter()
            await rt.run("bench", {})
            out.append(time.perf_counter() - t0)
    return out


async def bare_floor(path: str, n: int) -> float:
    """An asyncio queue and one SQLite commit per step: the least any durable engine must do."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, step INTEGER, data TEXT)")
    q: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    done = asyncio.Event()
    remaining = n

    async def consumer() -> None:
        nonlocal remaining
        while True:
            wid, step = await q.get()
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO t VALUES (?, ?, ?)", (wid, step, json.dumps({"s": step})))
            db.execute("COMMIT")
            if step + 1 < STEPS:
                q.put_nowait((wid, step + 1))
            else:
                remaining -= 1
                if remaining == 0:
                    done.set()

    task = asyncio.create_task(consumer())
    t0 = time.perf_counter()
    for i in range(n):
        q.put_nowait((str(i), 0))
    await done.wait()
    elapsed = time.perf_counter() - t0
    task.cancel()
    db.close()
    return n * STEPS / elapsed


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workflows", type=int, default=500)
    ap.add_argument("--latency-runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds; the best is reported")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        floor = await bare_floor(os.path.join(tmp, "floor.db"), args.workflows)
        rates = [await throughput(os.path.join(tmp, f"t{i}.db"), args.workflows) for i in range(args.rounds)]
        lat = await latency(os.path.join(tmp, "lat.db"), args.latency_runs)
        ungrouped = await throughput(os.path.join(tmp, "single.db"), args.workflows, group_commit=False)
    best = max(rates)
    lat_ms = sorted(x * 1000 for x in lat)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, store sqlite (WAL, synchronous=NORMAL)")
    print(
        f"throughput: {args.workflows} concurrent workflows x {STEPS} no-op steps: "
        f"{best:,.0f} steps/s (rounds: {', '.join(f'{r:,.0f}' for r in rates)})"
    )
    print(
        f"bare floor (asyncio queue + 1 SQLite commit per step): {floor:,.0f} steps/s; "
        f"engine/floor = {best / floor:.2f}"
    )
    print(
        f"without group commit (one transaction per transition): {ungrouped:,.0f} steps/s; "
        f"group commit gains x{best / ungrouped:.2f}"
    )
    print(
        f"latency: unloaded {STEPS}-step workflow, {args.latency_runs} runs: "
        f"median {statistics.median(lat_ms):.3f} ms, p90 {lat_ms[int(len(lat_ms) * 0.9)]:.3f} ms, "
        f"min {lat_ms[0]:.3f} ms"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    asyncio.run(main())
