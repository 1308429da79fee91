"""What only the SQLite store promises: WAL, one owning process per file, clear errors on bad paths."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest

from multiagents import StoreError, StoreLocked, WorkflowBuilder
from multiagents.machine import Start, decide, new_instance
from multiagents.state import WorkflowInstance
from multiagents.store import Transition, open_store
from multiagents.store.sqlite import SQLiteStore

T0 = 1_700_000_000.0
DEFINITION = WorkflowBuilder("sqlite_wf").add_step("a", "work_a").build()


def started(tid: str) -> WorkflowInstance:
    inst, _ = decide(new_instance(DEFINITION, tid, {"n": 1}, T0), Start(), DEFINITION, T0, random.Random(1))
    return inst


async def test_journal_mode_is_wal(tmp_path: Path) -> None:
    """The store switches the file to WAL, so readers never block the owning writer."""
    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.open()
    try:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "s.db") as raw:  # WAL is a property of the file and persists
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


async def test_url_opens_a_sqlite_store_on_that_path(tmp_path: Path) -> None:
    """sqlite:///<absolute path> names the file itself, and the store is exclusive by default."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    assert isinstance(store, SQLiteStore)
    assert os.path.abspath(store.path) == str(tmp_path / "s.db")
    assert store.exclusive is True


async def test_second_exclusive_store_is_locked_out(tmp_path: Path) -> None:
    """While one store owns the file, another exclusive one gets StoreLocked naming the file and owner."""
    path = str(tmp_path / "s.db")
    owner = SQLiteStore(path)
    await owner.open()
    try:
        rival = SQLiteStore(path)
        with pytest.raises(StoreLocked) as caught:
            await rival.open()
        message = str(caught.value)
        assert path in message
        assert f"pid {os.getpid()}" in message
        # The owner is undisturbed and the refused store holds nothing open.
        await owner.commit([Transition(started("t1"), 0)])
        assert await owner.load("t1") is not None
        with pytest.raises(StoreError, match="not open"):
            await rival.load("t1")
    finally:
        await owner.close()


async def test_non_exclusive_store_reads_while_the_owner_runs(tmp_path: Path) -> None:
    """A read-only tool (exclusive=False) opens a locked file and sees what the owner committed."""
    path = str(tmp_path / "s.db")
    owner = SQLiteStore(path)
    await owner.open()
    reader = SQLiteStore(path, exclusive=False)
    try:
        await owner.commit([Transition(started("t1"), 0)])
        await reader.open()
        assert [i.transaction_id for i in await reader.list_instances()] == ["t1"]
        await owner.commit([Transition(started("t2"), 0)])
        assert await reader.load("t2") is not None
    finally:
        await reader.close()
        await owner.close()


async def test_non_exclusive_store_does_not_lock_out_an_owner(tmp_path: Path) -> None:
    """A read-only store takes no lock: an owning store can open while it is open."""
    path = str(tmp_path / "s.db")
    creator = SQLiteStore(path)  # a read-only store opens only a store that exists
    await creator.open()
    await creator.close()
    reader = open_store(f"sqlite:///{path}", exclusive=False)
    await reader.open()
    owner = SQLiteStore(path)
    try:
        await owner.open()
        await owner.commit([Transition(started("t1"), 0)])
        assert await reader.load("t1") is not None
    finally:
        await owner.close()
        await reader.close()


async def test_lock_is_released_on_close(tmp_path: Path) -> None:
    """Once the owner closes, a new exclusive store opens the file and finds its data."""
    path = str(tmp_path / "s.db")
    first = SQLiteStore(path)
    await first.open()
    await first.commit([Transition(started("t1"), 0)])
    await first.close()
    second = SQLiteStore(path)
    await second.open()
    try:
        assert await second.load("t1") is not None
    finally:
        await second.close()


async def test_missing_folder_is_a_store_error_naming_it(tmp_path: Path) -> None:
    """A path in a folder that does not exist fails with StoreError naming the folder, creating nothing."""
    missing = tmp_path / "no" / "such"
    store = SQLiteStore(str(missing / "s.db"))
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert not isinstance(caught.value, StoreLocked)
    assert str(missing) in str(caught.value)
    assert not (tmp_path / "no").exists()


async def test_file_that_is_not_a_database_is_a_store_error_and_unlocks(tmp_path: Path) -> None:
    """A file that is not SQLite fails with StoreError naming it, and leaves the lock free."""
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database, just some text " * 100)
    store = SQLiteStore(str(path))
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    path.unlink()
    again = SQLiteStore(str(path))
    await again.open()  # a StoreLocked here would mean the failed open kept the lock
    await again.close()


async def test_newer_schema_is_refused_and_unlocks(tmp_path: Path) -> None:
    """A file written by a newer schema is refused with StoreError, and the lock is not kept."""
    path = str(tmp_path / "s.db")
    store = SQLiteStore(path)
    await store.open()
    store.db.execute("UPDATE multiagents_meta SET value = '99' WHERE key = 'schema'")
    await store.close()
    newer = SQLiteStore(path)
    with pytest.raises(StoreError, match="schema 99") as caught:
        await newer.open()
    assert not isinstance(caught.value, StoreLocked)
    with pytest.raises(StoreError, match="schema 99") as caught:
        await SQLiteStore(path).open()
    assert not isinstance(caught.value, StoreLocked)


async def test_commit_survives_a_new_connection(tmp_path: Path) -> None:
    """A commit is on disk when commit returns: a separate plain connection reads the row."""
    path = tmp_path / "s.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        await store.commit([Transition(started("t1"), 0)])
        raw = sqlite3.connect(path)
        try:
            rows = raw.execute("SELECT transaction_id, state, version FROM multiagents_workflows").fetchall()
        finally:
            raw.close()
        assert rows == [("t1", "running", 1)]
    finally:
        await store.close()


def test_bad_synchronous_setting_is_rejected() -> None:
    """synchronous accepts only SQLite's own levels."""
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore("x.db", synchronous="sometimes")


async def test_read_only_store_refuses_writes_and_missing_files(tmp_path) -> None:
    """A store opened without the lock is read-only: writes are refused, and a missing file is not created."""
    from multiagents.store.sqlite import SQLiteStore

    missing = tmp_path / "nope.db"
    with pytest.raises(StoreError, match="no store file"):
        await SQLiteStore(str(missing), exclusive=False).open()
    assert not missing.exists()

    path = str(tmp_path / "s.db")
    owner = SQLiteStore(path)
    await owner.open()
    await owner.close()
    reader = SQLiteStore(path, exclusive=False)
    await reader.open()
    try:
        with pytest.raises(StoreError, match="read-only"):
            await reader.commit([])
        assert await reader.list_instances() == []
    finally:
        await reader.close()
