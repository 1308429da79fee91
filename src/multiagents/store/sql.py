"""The SQL core shared by the SQL stores: schema, statements and row mapping.

Dialects differ only in placeholders and a few types; each store module passes its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from multiagents._json import dumps, loads
from multiagents.state import TERMINAL_STATES, SagaState, WorkflowInstance
from multiagents.tracking import ErrorFilter

__all__ = ["Dialect", "error_row", "instance_row", "row_instance", "update_args"]

SCHEMA_VERSION = 1


class Dialect:
    """Placeholder style and column types of one SQL flavour."""

    def __init__(self, param: str, real: str = "REAL", text: str = "TEXT") -> None:
        self._param = param  # "?" or "$"
        # Orders records written at one instant by when they were written: SQLite's implicit rowid, or
        # the serial column the other dialects add.
        self._tiebreak = "rowid" if param == "?" else "seq"
        self.real = real
        self.text = text

    def p(self, n: int) -> str:
        """The n-th (1-based) placeholder."""
        return "?" if self._param == "?" else f"${n}"

    def params(self, count: int, start: int = 1) -> str:
        return ", ".join(self.p(i) for i in range(start, start + count))

    def schema(self) -> list[str]:
        t, r = self.text, self.real
        return [
            f"CREATE TABLE IF NOT EXISTS multiagents_meta (key {t} PRIMARY KEY, value {t} NOT NULL)",
            f"""CREATE TABLE IF NOT EXISTS multiagents_workflows (
                transaction_id {t} PRIMARY KEY,
                workflow_id {t} NOT NULL,
                state {t} NOT NULL,
                version INTEGER NOT NULL,
                created_at {r} NOT NULL,
                updated_at {r} NOT NULL,
                wake_at {r},
                data {t} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS multiagents_workflows_state "
            "ON multiagents_workflows (state, created_at)",
            "CREATE INDEX IF NOT EXISTS multiagents_workflows_created ON multiagents_workflows (created_at)",
            f"""CREATE TABLE IF NOT EXISTS multiagents_errors (
                id {t} PRIMARY KEY,{"" if self._param == "?" else chr(10) + "                seq BIGSERIAL,"}
                recorded_at {r} NOT NULL,
                transaction_id {t},
                workflow_id {t},
                step {t},
                category {t},
                data {t} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS multiagents_errors_time ON multiagents_errors (recorded_at)",
            "CREATE INDEX IF NOT EXISTS multiagents_errors_workflow "
            "ON multiagents_errors (workflow_id, recorded_at)",
        ]

    def insert_error(self) -> str:
        """Insert one error record; a record already stored (same id) is left as it is."""
        head = "INSERT OR IGNORE INTO" if self._param == "?" else "INSERT INTO"
        tail = "" if self._param == "?" else " ON CONFLICT (id) DO NOTHING"
        return (
            f"{head} multiagents_errors (id, recorded_at, transaction_id, workflow_id, step, "
            f"category, data) VALUES ({self.params(7)}){tail}"
        )

    def query_errors(self, where: ErrorFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column, value, op in (
            ("transaction_id", where.transaction_id, "="),
            ("workflow_id", where.workflow_id, "="),
            ("step", where.step, "="),
            ("category", where.category, "="),
            ("recorded_at", where.since, ">="),
            ("recorded_at", where.until, "<"),
        ):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} {op} {self.p(len(args))}")
        sql = "SELECT data FROM multiagents_errors"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        # Records of one instant keep the order they were written in (SQLite's rowid; a serial elsewhere).
        sql += f" ORDER BY recorded_at DESC, {self._tiebreak} DESC"
        if where.limit is not None:
            args.append(int(where.limit))
            sql += f" LIMIT {self.p(len(args))}"
        return sql, args

    def prune_errors(self, before: float | None, keep: int | None) -> list[tuple[str, list[Any]]]:
        """Statements that enforce the retention bounds: an age, and a count of newest records kept."""
        statements: list[tuple[str, list[Any]]] = []
        if before is not None:
            statements.append((f"DELETE FROM multiagents_errors WHERE recorded_at < {self.p(1)}", [before]))
        if keep is not None:
            everything = "LIMIT -1 " if self._param == "?" else ""  # SQLite needs a LIMIT before OFFSET
            statements.append(
                (
                    "DELETE FROM multiagents_errors WHERE id IN (SELECT id FROM multiagents_errors "
                    f"ORDER BY recorded_at DESC, {self._tiebreak} DESC {everything}OFFSET {self.p(1)})",
                    [int(keep)],
                )
            )
        return statements

    def insert(self) -> str:
        return (
            "INSERT INTO multiagents_workflows (transaction_id, workflow_id, state, version, "
            f"created_at, updated_at, wake_at, data) VALUES ({self.params(8)})"
        )

    def update(self) -> str:
        p = self.p
        return (
            f"UPDATE multiagents_workflows SET state = {p(1)}, version = {p(2)}, updated_at = {p(3)}, "
            f"wake_at = {p(4)}, data = {p(5)} WHERE transaction_id = {p(6)} AND version = {p(7)}"
        )

    def load(self) -> str:
        return f"SELECT data FROM multiagents_workflows WHERE transaction_id = {self.p(1)}"

    def list_query(
        self, state: SagaState | None, workflow_id: str | None, limit: int
    ) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if state is not None:
            args.append(state.value)
            where.append(f"state = {self.p(len(args))}")
        if workflow_id is not None:
            args.append(workflow_id)
            where.append(f"workflow_id = {self.p(len(args))}")
        args.append(int(limit))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = (
            f"SELECT data FROM multiagents_workflows {clause}"
            f"ORDER BY created_at DESC LIMIT {self.p(len(args))}"
        )
        return sql, args

    def unfinished(self) -> tuple[str, list[Any]]:
        states = sorted(s.value for s in TERMINAL_STATES)
        sql = (
            "SELECT data FROM multiagents_workflows WHERE state NOT IN "
            f"({self.params(len(states))}) ORDER BY created_at"
        )
        return sql, states


def instance_row(inst: WorkflowInstance) -> tuple[Any, ...]:
    """Insert arguments: (tid, workflow_id, state, version, created_at, updated_at, wake_at, data)."""
    return (
        inst.transaction_id,
        inst.workflow_id,
        inst.state.value,
        inst.version,
        inst.created_at,
        inst.updated_at,
        inst.wake_at,
        dumps(inst.to_dict()),
    )


def update_args(row: Sequence[Any], expected_version: int) -> tuple[Any, ...]:
    """Update arguments from an insert row, with the expected previous version last."""
    tid, _wf, state, version, _created, updated, wake, data = row
    return (state, version, updated, wake, data, tid, expected_version)


def error_row(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        record["id"],
        record.get("recorded_at", 0.0),
        record.get("transaction_id"),
        record.get("workflow_id"),
        record.get("step"),
        record.get("category"),
        dumps(dict(record)),
    )


def row_instance(data: str | bytes) -> WorkflowInstance:
    return WorkflowInstance.from_dict(loads(data))
