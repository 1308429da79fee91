"""The store contract: every backend behaves the same behind the Store protocol.

Each test runs once per backend in BACKENDS. A new backend joins the suite by adding one entry there
(with a URL factory, and ``durable=True`` if it keeps data across close and reopen).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from multiagents import ConcurrencyConflict, WorkflowBuilder
from multiagents.errors import ErrorInfo
from multiagents.machine import Start, decide, new_instance
from multiagents.messages import Kind, Result
from multiagents.state import SagaState, WorkflowInstance
from multiagents.store import Store, Transition, open_store
from multiagents.workflow import WorkflowDefinition


@dataclass(frozen=True)
class Backend:
    name: str
    url: Callable[[Path], str]
    durable: bool


BACKENDS = [
    Backend("memory", lambda tmp: "memory://", durable=False),
    Backend("sqlite", lambda tmp: f"sqlite:///{tmp}/s.db", durable=True),
]
DURABLE = [b for b in BACKENDS if b.durable]

T0 = 1_700_000_000.25
DEFINITION: WorkflowDefinition = (
    WorkflowBuilder("contract_wf")
    .add_step("reserve", "reserve_worker", compensation="release_worker")
    .add_step("charge", "charge_worker")
    .build()
)
OTHER: WorkflowDefinition = WorkflowBuilder("other_wf").add_step("only", "only_worker").build()


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    param: Backend = request.param
    return param


@pytest.fixture(params=DURABLE, ids=lambda b: b.name)
def durable(request: pytest.FixtureRequest) -> Backend:
    param: Backend = request.param
    return param


@pytest.fixture
async def store(backend: Backend, tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(backend.url(tmp_path))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def started(
    tid: str, created_at: float = T0, definition: WorkflowDefinition = DEFINITION
) -> WorkflowInstance:
    """A freshly started instance (version 1, running, first step dispatched), as the engine inserts it."""
    inst = new_instance(
        definition, tid, {"order_id": tid, "note": "ünïcode ✓", "items": [1, 2.5, None]}, created_at
    )
    inst, _ = decide(inst, Start(), definition, created_at, random.Random(1))
    return inst


def advanced(inst: WorkflowInstance, now: float, *, ok: bool = True) -> WorkflowInstance:
    """The instance after the result of its running attempt arrives (one version later)."""
    step = next(
        n for n, sr in inst.steps.items() if sr.execution.attempt_id and sr.execution.status == "running"
    )
    attempt_id = inst.steps[step].execution.attempt_id
    assert attempt_id is not None
    error = (
        None if ok else ErrorInfo.from_dict({"category": "transient", "message": "down", "retryable": True})
    )
    result = Result(
        inst.transaction_id, step, Kind.EXECUTE, attempt_id, {"id": "r-1"} if ok else None, error, now, now
    )
    new, _ = decide(inst, result, DEFINITION, now, random.Random(1))
    assert new.version == inst.version + 1
    return new


def finished(tid: str, created_at: float) -> WorkflowInstance:
    """An instance run to completion (both steps done)."""
    inst = started(tid, created_at)
    inst = advanced(inst, created_at + 1)
    inst = advanced(inst, created_at + 2)
    assert inst.state is SagaState.COMPLETED
    return inst


async def test_insert_then_load_round_trips_exactly(store: Store) -> None:
    """An inserted instance loads back equal field for field, nested history and errors included."""
    inst = advanced(started("t1"), T0 + 1)
    inst = advanced(inst, T0 + 2, ok=False)  # a failed attempt waiting to retry: error, wake_at, history
    await store.commit([Transition(inst, 0)])
    loaded = await store.load("t1")
    assert loaded is not None
    assert loaded.to_dict() == inst.to_dict()
    assert loaded.state is SagaState.RUNNING
    assert loaded.wake_at == inst.wake_at is not None


async def test_load_of_unknown_id_is_none(store: Store) -> None:
    """Loading a transaction id that was never stored gives None, not an error."""
    assert await store.load("nope") is None


async def test_update_with_current_version_replaces_the_instance(store: Store) -> None:
    """A transition whose expected version is the stored one overwrites the instance."""
    v1 = started("t1")
    await store.commit([Transition(v1, 0)])
    v2 = advanced(v1, T0 + 1)
    await store.commit([Transition(v2, v1.version)])
    loaded = await store.load("t1")
    assert loaded is not None
    assert loaded.version == 2
    assert loaded.to_dict() == v2.to_dict()


async def test_stale_version_conflicts_and_keeps_the_stored_instance(store: Store) -> None:
    """Writing with a version that has moved on raises ConcurrencyConflict and changes nothing."""
    v1 = started("t1")
    await store.commit([Transition(v1, 0)])
    v2 = advanced(v1, T0 + 1)
    await store.commit([Transition(v2, 1)])
    rival = advanced(v1, T0 + 5, ok=False)  # decided from the old version 1
    with pytest.raises(ConcurrencyConflict):
        await store.commit([Transition(rival, 1)])
    loaded = await store.load("t1")
    assert loaded is not None
    assert loaded.to_dict() == v2.to_dict()


async def test_update_of_missing_instance_conflicts(store: Store) -> None:
    """An update (expected version above 0) of an instance that was never inserted is a conflict."""
    with pytest.raises(ConcurrencyConflict):
        await store.commit([Transition(advanced(started("t1"), T0 + 1), 1)])
    assert await store.load("t1") is None


async def test_duplicate_insert_conflicts(store: Store) -> None:
    """Inserting (expected version 0) an id that already exists raises ConcurrencyConflict."""
    first = started("t1")
    await store.commit([Transition(first, 0)])
    again = started("t1", created_at=T0 + 9)
    with pytest.raises(ConcurrencyConflict):
        await store.commit([Transition(again, 0)])
    loaded = await store.load("t1")
    assert loaded is not None
    assert loaded.created_at == T0


async def test_duplicate_insert_of_a_version_zero_instance_conflicts(store: Store) -> None:
    """Expected version 0 means "must not exist yet", even when the stored instance is at version 0."""
    fresh = new_instance(DEFINITION, "t1", {"n": 1}, T0)
    await store.commit([Transition(fresh, 0)])
    other = new_instance(DEFINITION, "t1", {"n": 2}, T0 + 1)
    with pytest.raises(ConcurrencyConflict):
        await store.commit([Transition(other, 0)])
    loaded = await store.load("t1")
    assert loaded is not None
    assert loaded.input == {"n": 1}


async def test_failed_batch_writes_nothing(store: Store) -> None:
    """A batch with one good and one conflicting transition leaves both instances as they were."""
    a1, b1 = started("a"), started("b", T0 + 1)
    await store.commit([Transition(a1, 0), Transition(b1, 0)])
    a2 = advanced(a1, T0 + 2)
    b2 = advanced(b1, T0 + 2)
    for batch in ([Transition(a2, 1), Transition(b2, 7)], [Transition(b2, 7), Transition(a2, 1)]):
        with pytest.raises(ConcurrencyConflict):
            await store.commit(batch)
        assert (await store.load("a")).to_dict() == a1.to_dict()  # type: ignore[union-attr]
        assert (await store.load("b")).to_dict() == b1.to_dict()  # type: ignore[union-attr]


async def test_failed_batch_inserts_nothing(store: Store) -> None:
    """A batch whose duplicate insert conflicts does not insert its other new instances either."""
    await store.commit([Transition(started("dup"), 0)])
    with pytest.raises(ConcurrencyConflict):
        await store.commit([Transition(started("new"), 0), Transition(started("dup"), 0)])
    assert await store.load("new") is None
    assert [i.transaction_id for i in await store.list_instances()] == ["dup"]


async def test_batch_commits_every_transition(store: Store) -> None:
    """A batch of inserts and updates of different instances is stored in full."""
    a1 = started("a")
    await store.commit([Transition(a1, 0)])
    a2, b1 = advanced(a1, T0 + 1), started("b", T0 + 1)
    await store.commit([Transition(a2, 1), Transition(b1, 0)])
    assert (await store.load("a")).to_dict() == a2.to_dict()  # type: ignore[union-attr]
    assert (await store.load("b")).to_dict() == b1.to_dict()  # type: ignore[union-attr]


async def _populate(store: Store) -> None:
    """Five instances: t0 oldest ... t4 newest; t1 and t3 completed; t4 of another workflow."""
    await store.commit(
        [
            Transition(started("t0", T0), 0),
            Transition(finished("t1", T0 + 10), 0),
            Transition(started("t2", T0 + 20), 0),
            Transition(finished("t3", T0 + 30), 0),
            Transition(started("t4", T0 + 40, OTHER), 0),
        ]
    )


def _ids(instances: list[WorkflowInstance]) -> list[str]:
    return [i.transaction_id for i in instances]


async def test_list_instances_is_newest_first(store: Store) -> None:
    """list_instances orders by creation time, newest first."""
    await _populate(store)
    assert _ids(await store.list_instances()) == ["t4", "t3", "t2", "t1", "t0"]


async def test_list_instances_ignores_update_order(store: Store) -> None:
    """Updating an old instance does not move it up the list: the order is by creation, not update."""
    await _populate(store)
    t0 = await store.load("t0")
    assert t0 is not None
    await store.commit([Transition(advanced(t0, T0 + 100), t0.version)])
    assert _ids(await store.list_instances()) == ["t4", "t3", "t2", "t1", "t0"]


async def test_list_instances_filters_by_state(store: Store) -> None:
    """list_instances(state=...) keeps only instances in that state, newest first."""
    await _populate(store)
    assert _ids(await store.list_instances(state=SagaState.COMPLETED)) == ["t3", "t1"]
    assert _ids(await store.list_instances(state=SagaState.RUNNING)) == ["t4", "t2", "t0"]
    assert await store.list_instances(state=SagaState.CANCELLED) == []


async def test_list_instances_filters_by_workflow_id(store: Store) -> None:
    """list_instances(workflow_id=...) keeps only that workflow's instances; filters combine."""
    await _populate(store)
    assert _ids(await store.list_instances(workflow_id="other_wf")) == ["t4"]
    assert _ids(await store.list_instances(workflow_id="contract_wf")) == ["t3", "t2", "t1", "t0"]
    both = await store.list_instances(workflow_id="contract_wf", state=SagaState.RUNNING)
    assert _ids(both) == ["t2", "t0"]
    assert await store.list_instances(workflow_id="missing") == []


async def test_list_instances_limit_keeps_the_newest(store: Store) -> None:
    """limit caps the result at the newest instances."""
    await _populate(store)
    assert _ids(await store.list_instances(limit=2)) == ["t4", "t3"]
    assert _ids(await store.list_instances(state=SagaState.RUNNING, limit=1)) == ["t4"]


async def test_listed_instances_are_complete(store: Store) -> None:
    """list_instances returns whole instances, equal to what load returns."""
    await _populate(store)
    for inst in await store.list_instances():
        loaded = await store.load(inst.transaction_id)
        assert loaded is not None
        assert inst.to_dict() == loaded.to_dict()


async def test_unfinished_is_non_terminal_oldest_first(store: Store) -> None:
    """unfinished returns every non-terminal instance of any workflow, oldest first."""
    await _populate(store)
    assert _ids(await store.unfinished()) == ["t0", "t2", "t4"]


async def test_unfinished_drops_an_instance_once_it_finishes(store: Store) -> None:
    """An instance updated into a terminal state no longer counts as unfinished."""
    inst = advanced(started("t1"), T0 + 1)
    await store.commit([Transition(inst, 0)])
    assert _ids(await store.unfinished()) == ["t1"]
    done = advanced(inst, T0 + 2)
    assert done.state is SagaState.COMPLETED
    await store.commit([Transition(done, inst.version)])
    assert await store.unfinished() == []


async def test_unfinished_of_empty_store_is_empty(store: Store) -> None:
    """A store with nothing in it has nothing unfinished and nothing to list."""
    assert await store.unfinished() == []
    assert await store.list_instances() == []


async def test_loaded_instances_are_copies(store: Store) -> None:
    """Changing a loaded instance in memory does not change what the store holds."""
    inst = started("t1")
    await store.commit([Transition(inst, 0)])
    loaded = await store.load("t1")
    assert loaded is not None
    loaded.input["order_id"] = "changed"
    loaded.history.clear()
    again = await store.load("t1")
    assert again is not None
    assert again.to_dict() == inst.to_dict()


async def test_values_survive_close_and_reopen(durable: Backend, tmp_path: Path) -> None:
    """What a durable store committed is there, unchanged, after it is closed and opened again."""
    url = durable.url(tmp_path)
    first = open_store(url)
    await first.open()
    await _populate(first)
    t0 = await first.load("t0")
    assert t0 is not None
    t0_v2 = advanced(t0, T0 + 100)
    await first.commit([Transition(t0_v2, t0.version)])
    before = {i.transaction_id: i.to_dict() for i in await first.list_instances()}
    await first.close()

    second = open_store(url)
    await second.open()
    try:
        after = {i.transaction_id: i.to_dict() for i in await second.list_instances()}
        assert after == before
        assert (await second.load("t0")).to_dict() == t0_v2.to_dict()  # type: ignore[union-attr]
        assert _ids(await second.unfinished()) == ["t0", "t2", "t4"]
        # Compare-and-set continues from the stored version.
        with pytest.raises(ConcurrencyConflict):
            await second.commit([Transition(advanced(t0_v2, T0 + 101), t0.version)])
    finally:
        await second.close()
