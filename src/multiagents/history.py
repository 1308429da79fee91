"""Execution history entries: one per attempt and per compensation, plus notes on workflow events.

Entries are plain dicts (they are stored as JSON and shown to people). The machine never mutates an entry
in place: a closed attempt replaces its entry, so an instance handed to ``decide`` stays untouched.
"""

from __future__ import annotations

from typing import Any

from multiagents.errors import ErrorInfo
from multiagents.messages import Result

__all__ = ["attempt_entry", "close_entry", "ignored_entry", "note"]


def note(
    step: str | None,
    kind: str,
    status: str,
    now: float,
    *,
    attempt: int | None = None,
    attempt_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Something that happened at one instant: a skip, a cancel request, a redispatch."""
    entry: dict[str, Any] = {
        "step": step,
        "kind": kind,
        "status": status,
        "attempt": attempt,
        "started_at": now,
        "completed_at": now,
        "error": None,
    }
    if attempt_id is not None:
        entry["attempt_id"] = attempt_id
    if reason is not None:
        entry["reason"] = reason
    return entry


def attempt_entry(
    step: str, kind: str, attempt: int, attempt_id: str, worker: str | None, now: float
) -> dict[str, Any]:
    """A dispatched attempt, open until :func:`close_entry` records how it ended."""
    return {
        "step": step,
        "kind": kind,
        "status": "running",
        "attempt": attempt,
        "attempt_id": attempt_id,
        "worker": worker,
        "started_at": now,
        "completed_at": None,
        "error": None,
    }


def ignored_entry(r: Result, now: float, why: str) -> dict[str, Any]:
    """A result that arrived for an attempt that is no longer current."""
    return {
        "step": r.step,
        "kind": r.kind.value,
        "status": "ignored",
        "attempt": None,
        "attempt_id": r.attempt_id,
        "started_at": r.started_at,
        "completed_at": r.finished_at,
        "error": r.error.to_dict() if r.error else None,
        "reason": f"result of attempt {r.attempt_id} ignored: {why}",
        "recorded_at": now,
    }


def close_entry(
    history: list[dict[str, Any]],
    attempt_id: str | None,
    status: str,
    started: float | None,
    finished: float,
    error: ErrorInfo | None = None,
    next_attempt_at: float | None = None,
) -> dict[str, Any] | None:
    """Close the open entry of ``attempt_id`` in place in ``history``; returns the entry as it was."""
    for i in range(len(history) - 1, -1, -1):
        entry = history[i]
        if entry.get("attempt_id") == attempt_id and entry["status"] == "running":
            updated = {
                **entry,
                "status": status,
                "completed_at": finished,
                "error": None if error is None else error.to_dict(),
            }
            if started is not None:
                updated["worker_started_at"] = started
            if next_attempt_at is not None:
                updated["next_attempt_at"] = next_attempt_at
            history[i] = updated
            return entry
    return None
