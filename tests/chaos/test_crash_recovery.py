"""Kill -9 an embedded app mid-step; a new Runtime on the same SQLite file finishes the job, once.

The app (crash_app.py) runs in a child process and logs every side effect to a file that survives
the kill; the resuming Runtime runs here, in the test process, on real time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from multiagents import Runtime, SagaState, StoreLocked
from multiagents.state import RunStatus
from multiagents.store import open_store

pytestmark = pytest.mark.chaos

APP = str(Path(__file__).with_name("crash_app.py"))


def _load_app() -> Any:
    """The app module itself, whichever import mode pytest runs in (the resuming side uses its workflow)."""
    spec = importlib.util.spec_from_file_location("crash_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crash_app = _load_app()
COUNT = 20
MARKER_DEADLINE = 10.0  # interpreter start included; the markers come well under 2 s after it
RESUME_DEADLINE = 10.0


class App:
    """The child process and what it has printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def spawn(cls, url: str, log: Path, count: int, scenario: str) -> App:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            APP,
            url,
            str(log),
            str(count),
            scenario,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def wait_for(self, started: bool, hanging: int) -> None:
        """Read output until ``started`` (if asked) and ``hanging`` hang markers have been printed."""
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MARKER_DEADLINE
        while ("started" in self.lines) < started or self.hanging() < hanging:
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), deadline - loop.time())
            except TimeoutError:
                raw = b""
            if not raw:
                err = await self.kill()
                raise AssertionError(f"the app stopped or stalled; printed {self.lines}; stderr:\n{err}")
            self.lines.append(raw.decode().strip())

    def hanging(self) -> int:
        return sum(1 for line in self.lines if line.startswith("hanging "))

    async def kill(self) -> str:
        """SIGKILL the app (if still alive) and return what it wrote to stderr."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        _, err = await self.proc.communicate()
        return err.decode(errors="replace")


def side_effects(log: Path) -> Counter[tuple[str, str, str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    found: Counter[tuple[str, str, str]] = Counter()
    for line in lines:
        tid, step, kind = line.split()
        found[(tid, step, kind)] += 1
    return found


async def snapshot(url: str) -> dict[str, dict[tuple[str, str], RunStatus]]:
    """What the store held at the kill, read as the read-only tools do: per run, its status."""
    store = open_store(url, exclusive=False)
    await store.open()
    try:
        result: dict[str, dict[tuple[str, str], RunStatus]] = {}
        for inst in await store.list_instances(limit=10_000):
            runs: dict[tuple[str, str], RunStatus] = {}
            for name, sr in inst.steps.items():
                runs[(name, "execute")] = sr.execution.status
                if sr.compensation is not None:
                    runs[(name, "compensate")] = sr.compensation.status
            result[inst.transaction_id] = runs
        return result
    finally:
        await store.close()


def check_once(
    before: dict[str, dict[tuple[str, str], RunStatus]], log: Path, expected: set[tuple[str, str]]
) -> None:
    """Each expected (step, kind) ran exactly once per workflow, except one in flight at the kill (<= 2)."""
    counts = side_effects(log)
    assert {(step, kind) for (_, step, kind) in counts} == expected
    for tid, runs in before.items():
        for step, kind in expected:
            n = counts[(tid, step, kind)]
            if runs.get((step, kind)) is RunStatus.RUNNING:
                assert 1 <= n <= 2, f"{tid} {step} {kind} was in flight and ran {n} times"
            else:
                assert n == 1, f"{tid} {step} {kind} ran {n} times"


async def resume(
    url: str, log: Path, scenario: str, tids: list[str], unfinished: int
) -> list[dict[str, Any]]:
    """Open a new Runtime on the file (it resumes by itself) and wait for every workflow to end."""
    wf = crash_app.build(str(log), scenario, hang=False)
    async with Runtime(workflows=[wf], store=url) as rt:
        assert rt.resumed == unfinished
        await asyncio.wait_for(asyncio.gather(*(rt.wait(t) for t in tids)), RESUME_DEADLINE)
        statuses = [await rt.get_status(t) for t in tids]
        listed = await rt.list_workflows(limit=1000)
    assert sorted(s["transaction_id"] for s in listed) == tids
    assert [s["state"] for s in listed] == [statuses[0]["state"]] * len(tids)
    return statuses


async def test_killed_mid_step_every_workflow_completes_and_steps_run_once(tmp_path: Path) -> None:
    """After SIGKILL mid-step a new Runtime completes all; steps ran once, the interrupted one twice."""
    url, log = f"sqlite:///{tmp_path}/crash.db", tmp_path / "effects.log"
    tids = crash_app.transaction_ids(COUNT)
    app = await App.spawn(url, log, COUNT, "step")
    try:
        await app.wait_for(started=True, hanging=COUNT)
    finally:
        await app.kill()
    assert app.proc.returncode == -signal.SIGKILL

    before = await snapshot(url)
    assert sorted(before) == tids
    for runs in before.values():  # every workflow was killed inside s3
        assert runs[("s1", "execute")] is runs[("s2", "execute")] is RunStatus.DONE
        assert runs[("s3", "execute")] is RunStatus.RUNNING
        assert runs[("s4", "execute")] is RunStatus.PENDING

    statuses = await resume(url, log, "step", tids, COUNT)
    assert [s["state"] for s in statuses] == [SagaState.COMPLETED] * COUNT
    for s in statuses:
        assert list(s["step_results"]) == list(crash_app.STEPS)
        assert any(e["status"] == "interrupted" and e["step"] == "s3" for e in s["execution_history"])
    check_once(before, log, {(step, "execute") for step in crash_app.STEPS})
    # s3 did its side effect before the kill and, its result lost, once more after: the upper bound.
    counts = side_effects(log)
    assert [counts[(tid, "s3", "execute")] for tid in tids] == [2] * COUNT


async def test_killed_mid_compensation_every_workflow_is_compensated_once(tmp_path: Path) -> None:
    """After SIGKILL mid-compensation a new Runtime finishes every rollback; each effect happened once."""
    url, log = f"sqlite:///{tmp_path}/crash.db", tmp_path / "effects.log"
    tids = crash_app.transaction_ids(COUNT)
    app = await App.spawn(url, log, COUNT, "compensation")
    try:
        await app.wait_for(started=True, hanging=COUNT)
    finally:
        await app.kill()

    before = await snapshot(url)
    for runs in before.values():
        assert runs[("s4", "execute")] is RunStatus.FAILED
        assert runs[("s1", "compensate")] is RunStatus.RUNNING

    statuses = await resume(url, log, "compensation", tids, COUNT)
    assert [s["state"] for s in statuses] == [SagaState.COMPENSATED] * COUNT
    for s in statuses:
        assert s["steps"]["s1"]["status"] == "compensated"
        assert s["error"]["step"] == "s4"
    check_once(before, log, {*((step, "execute") for step in crash_app.STEPS), ("s1", "compensate")})


async def test_store_is_locked_while_the_app_lives_and_free_after_the_kill(tmp_path: Path) -> None:
    """A second Runtime gets StoreLocked naming the file and owner pid; once the owner is killed, it opens."""
    path = tmp_path / "crash.db"
    url, log = f"sqlite:///{path}", tmp_path / "effects.log"
    count = 3
    tids = crash_app.transaction_ids(count)
    app = await App.spawn(url, log, count, "step")
    try:
        await app.wait_for(started=True, hanging=count)
        wf = crash_app.build(str(log), "step", hang=False)
        rival = Runtime(workflows=[wf], store=url)
        with pytest.raises(StoreLocked) as caught:
            await rival.start()
        assert str(path) in str(caught.value)
        assert f"pid {app.proc.pid}" in str(caught.value)
        # Read-only tools still open it while the owner runs.
        reader = open_store(url, exclusive=False)
        await reader.open()
        try:
            assert sorted(i.transaction_id for i in await reader.list_instances()) == tids
        finally:
            await reader.close()
        assert app.proc.returncode is None  # the owner was not disturbed
    finally:
        await app.kill()
    assert os.path.exists(f"{path}.lock")  # the stale lock file stays, but the OS lock died with the process

    statuses = await resume(url, log, "step", tids, count)
    assert [s["state"] for s in statuses] == [SagaState.COMPLETED] * count


async def test_killed_at_an_arbitrary_moment_every_workflow_completes(tmp_path: Path) -> None:
    """Killed wherever the workflows are, a new Runtime completes them; committed steps never run again."""
    url, log = f"sqlite:///{tmp_path}/crash.db", tmp_path / "effects.log"
    tids = crash_app.transaction_ids(COUNT)
    app = await App.spawn(url, log, COUNT, "race")
    try:
        await app.wait_for(started=True, hanging=0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MARKER_DEADLINE
        # Polling the other process's progress (not waiting out a timer) until about half is done.
        while sum(side_effects(log).values()) < 2 * COUNT and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
    finally:
        await app.kill()

    before = await snapshot(url)
    assert sorted(before) == tids
    in_flight = [tid for tid, runs in before.items() if RunStatus.RUNNING in runs.values()]
    assert in_flight, "the kill landed after every workflow had finished"
    unfinished = sum(1 for runs in before.values() if runs[("s4", "execute")] is not RunStatus.DONE)

    statuses = await resume(url, log, "race", tids, unfinished)
    assert [s["state"] for s in statuses] == [SagaState.COMPLETED] * COUNT
    check_once(before, log, {(step, "execute") for step in crash_app.STEPS})
