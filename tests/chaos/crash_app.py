"""An embedded app that the crash tests run in a child process and kill with SIGKILL.

    python crash_app.py STORE_URL LOG_PATH COUNT SCENARIO

It starts COUNT workflows of four steps (s1 has a compensation, undo_s1) on the store, prints
``started`` once every one of them is stored, and then runs until it is killed. Every worker appends
``<tid> <step> <kind>`` to LOG_PATH (flushed and fsynced) just before it returns or raises, so the log
survives the kill and counts side effects exactly. One attempt per workflow hangs, so that the kill
lands mid-step; it prints ``hanging <tid>`` when it does:

- scenario ``step``: s3 does its side effect, then hangs (the effect is done, its result dies with the
  process); resumed, every workflow completes;
- scenario ``compensation``: s4 fails for good and undo_s1 hangs before its side effect; resumed, every
  workflow is compensated;
- scenario ``race``: nothing hangs, every attempt takes a few milliseconds, and the kill lands wherever
  the workflows happen to be.

The test process imports :func:`build` to resume the same workflows with the hanging turned off.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from multiagents import Runtime, StepFailed, WorkflowBuilder, step_info, worker
from multiagents.workflow import WorkflowDefinition

STEPS = ("s1", "s2", "s3", "s4")
WORKFLOW_ID = "crash_saga"
SCENARIOS = ("step", "compensation", "race")


def transaction_ids(count: int) -> list[str]:
    return [f"wf-{i:03d}" for i in range(count)]


def record(log_path: str, tid: str, step: str, kind: str) -> None:
    """Append one side effect; on disk before the caller goes on, whatever happens to the process."""
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(f"{tid} {step} {kind}\n")
        f.flush()
        os.fsync(f.fileno())


def build(log_path: str, scenario: str, *, hang: bool) -> WorkflowDefinition:
    """The workflow of ``scenario``; with ``hang`` the scenario's chosen attempt never returns."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    hang_at = {"step": ("s3", "execute"), "compensation": ("s1", "compensate")}.get(scenario)

    async def work(context: dict[str, Any]) -> dict[str, Any]:
        info = step_info()
        hangs = hang and (info.step, info.kind) == hang_at
        if scenario == "race":
            await asyncio.sleep(0.01 + sum(map(ord, info.transaction_id + info.step)) % 20 / 1000)
        if hangs and scenario == "compensation":
            print(f"hanging {info.transaction_id}", flush=True)
            await asyncio.sleep(3600)
        record(log_path, info.transaction_id, info.step, info.kind)
        if hangs and scenario == "step":
            print(f"hanging {info.transaction_id}", flush=True)
            await asyncio.sleep(3600)
        if scenario == "compensation" and info.step == "s4":
            raise StepFailed("s4 refused")
        return {f"{info.step}_{info.kind}": True}

    builder = WorkflowBuilder(WORKFLOW_ID)
    for name in STEPS:
        builder = builder.add_step(
            name,
            worker(f"do_{name}")(work),
            compensation=worker("undo_s1")(work) if name == "s1" else None,
            timeout=60,
            compensation_timeout=60,
        )
    return builder.build()


async def serve(url: str, log_path: str, count: int, scenario: str) -> None:
    async with Runtime(workflows=[build(log_path, scenario, hang=True)], store=url) as rt:
        for tid in transaction_ids(count):
            await rt.execute_workflow(WORKFLOW_ID, {"n": tid}, transaction_id=tid)
        print("started", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    store_url, log, n, which = sys.argv[1:5]
    asyncio.run(serve(store_url, log, int(n), which))
