"""The embedded default store: one SQLite file in WAL mode, owned by one Runtime at a time.

Any number of read-only stores (``exclusive=False``) may read the file beside its owner.

Calls are synchronous on the event loop: a WAL commit with ``synchronous=NORMAL`` takes tens of
microseconds, far less than a hop to a thread would, and it survives a killed process (only a power
loss can take the last commits; pass ``synchronous="FULL"`` to rule that out too).
"""

from __future__ import annotations

import functools
import inspect
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from multiagents._json import loads
from multiagents.errors import ConcurrencyConflict, StoreError, StoreLocked
from multiagents.state import SagaState, WorkflowInstance
from multiagents.store import Transition
from multiagents.store.sql import (
    SCHEMA_VERSION,
    Dialect,
    error_row,
    instance_row,
    row_instance,
    update_args,
)
from multiagents.tracking import ErrorFilter

__all__ = ["SQLiteStore"]

_DIALECT = Dialect("?")
_TABLES = ("multiagents_errors", "multiagents_meta", "multiagents_workflows")


F = TypeVar("F", bound=Callable[..., Any])


def _serialized(fn: F) -> F:
    """One connection serves the loop and the worker threads that record errors: one user at a time.

    The bodies never await, so holding a thread lock across them cannot block the event loop on itself.
    """
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def locked_async(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return await fn(self, *args, **kwargs)

        return cast(F, locked_async)

    @functools.wraps(fn)
    def locked(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return cast(F, locked)


class SQLiteStore:
    """A store in the SQLite file at ``path``.

    ``exclusive=True`` (what a Runtime uses) takes the file's lock, creates the file and its tables if
    needed and switches it to WAL. ``exclusive=False`` is for tools that only look (status, listing,
    while a Runtime runs on the file): it takes no lock and opens the file read-only, so it never
    creates, migrates or alters anything; a file that is missing or holds no multiagents tables is
    refused with StoreError, and so is every write.
    """

    def __init__(self, path: str, *, exclusive: bool = True, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = path
        self.exclusive = exclusive
        self.synchronous = synchronous.upper()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._lock_file: IO[str] | None = None

    def _take_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no OS lock to take
            return
        lock_path = self.path + ".lock"
        f = open(lock_path, "a+")  # noqa: SIM115 - held open for the store's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            f.close()
            raise StoreLocked(
                f"the store {self.path} is in use by another running Runtime ({owner}); "
                "stop it first, or open the store read-only for status and listing"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._lock_file = f

    async def open(self) -> None:
        if self._db is not None:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StoreError(f"cannot open store {self.path}: the folder {directory} does not exist")
        if not self.exclusive:
            self._db = self._open_read_only()
            return
        self._take_lock()
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA busy_timeout=5000")
            for stmt in _DIALECT.schema():
                db.execute(stmt)
            row = db.execute("SELECT value FROM multiagents_meta WHERE key='schema'").fetchone()
            if row is None:
                db.execute(
                    "INSERT OR IGNORE INTO multiagents_meta (key, value) VALUES ('schema', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema {row[0]}, newer than this version understands"
                )
        except (sqlite3.Error, StoreError) as exc:
            # A refused file must not stay locked (nor open) by the store that refused it.
            if db is not None:
                db.close()
            self._release_lock()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        self._db = db

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that cannot write: it creates no file, table or row and leaves the journal mode.

        A store in WAL mode is read through its ``-wal`` and ``-shm`` files, which SQLite itself adds
        beside the file when they are missing; the owner's commits stay visible to this connection.
        """
        if not os.path.isfile(self.path):
            raise StoreError(f"there is no store file at {os.path.abspath(self.path)}")
        uri = Path(os.path.abspath(self.path)).as_uri() + "?mode=ro"
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            names = {
                r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            }
            missing = [t for t in _TABLES if t not in names]
            if len(missing) == len(_TABLES):
                raise StoreError(f"{self.path} is not a multiagents store (it holds no multiagents tables)")
            if missing:
                raise StoreError(
                    f"{self.path} is not a complete multiagents store: it lacks {', '.join(missing)}"
                )
            row = db.execute("SELECT value FROM multiagents_meta WHERE key='schema'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema {row[0]}, newer than this version understands"
                )
        except (sqlite3.Error, StoreError) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        return db

    def _writable(self, what: str) -> sqlite3.Connection:
        """The connection, for a write; a store opened with ``exclusive=False`` is read-only."""
        if not self.exclusive:
            raise StoreError(
                f"store {self.path} is open read-only (exclusive=False), so {what} is refused; "
                "only the Runtime that owns the file writes to it"
            )
        return self.db

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"store {self.path} is not open")
        return self._db

    @_serialized
    async def commit(self, transitions: Sequence[Transition]) -> None:
        db = self._writable("a commit")
        insert, update, insert_error = _DIALECT.insert(), _DIALECT.update(), _DIALECT.insert_error()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for t in transitions:
                    row = instance_row(t.instance)
                    if t.expected_version == 0:
                        db.execute(insert, row)
                    elif db.execute(update, update_args(row, t.expected_version)).rowcount != 1:
                        raise ConcurrencyConflict(
                            f"workflow {t.instance.transaction_id}: version "
                            f"{t.expected_version} is no longer current"
                        )
                    if t.errors:
                        db.executemany(insert_error, [error_row(e) for e in t.errors])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            raise ConcurrencyConflict(f"workflow already exists: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: commit failed: {exc}") from exc

    @_serialized
    def _fetch(self, sql: str, args: Sequence[Any]) -> list[WorkflowInstance]:
        try:
            return [row_instance(r[0]) for r in self.db.execute(sql, args).fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: read failed: {exc}") from exc

    async def load(self, transaction_id: str) -> WorkflowInstance | None:
        found = self._fetch(_DIALECT.load(), (transaction_id,))
        return found[0] if found else None

    async def list_instances(
        self, *, state: SagaState | None = None, workflow_id: str | None = None, limit: int = 100
    ) -> list[WorkflowInstance]:
        sql, args = _DIALECT.list_query(state, workflow_id, limit)
        return self._fetch(sql, args)

    async def unfinished(self) -> list[WorkflowInstance]:
        sql, args = _DIALECT.unfinished()
        return self._fetch(sql, args)

    # ---- error log: sync twins serve ErrorTracker's sync methods (the seed's interface) ----------

    @_serialized
    def record_sync(self, records: Iterable[Mapping[str, Any]]) -> None:
        db = self._writable("recording errors")
        try:
            with db:
                db.executemany(_DIALECT.insert_error(), [error_row(r) for r in records])
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: recording errors failed: {exc}") from exc

    @_serialized
    def query_sync(self, where: ErrorFilter) -> list[dict[str, Any]]:
        sql, args = _DIALECT.query_errors(where)
        try:
            return [loads(r[0]) for r in self.db.execute(sql, args).fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: reading errors failed: {exc}") from exc

    async def record_errors(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.record_sync(records)

    async def query_errors(self, where: ErrorFilter) -> list[dict[str, Any]]:
        return self.query_sync(where)

    @_serialized
    async def prune_errors(self, *, before: float | None, keep: int | None) -> int:
        db = self._writable("pruning errors")
        removed = 0
        try:
            with db:
                for sql, args in _DIALECT.prune_errors(before, keep):
                    removed += db.execute(sql, args).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: pruning errors failed: {exc}") from exc
        return removed
