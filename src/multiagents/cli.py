"""The ``multiagents`` command: run the demo, and inspect or repair the workflows in a store.

This is the only module that reads environment variables: ``MULTIAGENTS_STORE`` is the default for
``--store`` and ``MULTIAGENTS_BUS`` for ``--bus``. Read-only commands (status, list) open a SQLite
store without its lock, so they work while a Runtime owns the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Mapping
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from multiagents.demo import WORKFLOW_ID, DemoReport, Shop, build, run_demo
from multiagents.errors import MultiAgentsError
from multiagents.runtime import DEFAULT_STORE, Runtime
from multiagents.state import SagaState
from multiagents.status import describe
from multiagents.store import Store, open_store

__all__ = ["cli", "main"]

T = TypeVar("T")

STATE_STYLE = {
    "completed": "green",
    "compensated": "yellow",
    "failed": "red",
    "compensation_failed": "bold red",
    "cancelled": "magenta",
    "running": "cyan",
    "compensating": "cyan",
    "pending": "dim",
}
OUTCOMES = [  # the demo's outcome table, in this order
    ("completed", "completed"),
    ("compensated", "compensated"),
    ("failed", "failed"),
    ("compensation_failed", "needs attention"),
    ("cancelled", "cancelled"),
]
store_option = click.option(
    "--store",
    envvar="MULTIAGENTS_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store URL (sqlite:///path.db); $MULTIAGENTS_STORE if set.",
)


class CliError(Exception):
    """Bad input: shown as one red sentence, exit code 1, no traceback."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def _stdout() -> Console:
    return Console(highlight=False)


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Bad input and framework errors become one red sentence on stderr and exit code 1."""
    try:
        yield
    except (CliError, MultiAgentsError) as exc:
        Console(stderr=True, highlight=False).print(Text(str(exc), style="red"), soft_wrap=True)
        raise click.exceptions.Exit(1) from None


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with _reported():
        return asyncio.run(make())


def _styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _when(ts: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(ts).strftime(fmt) if isinstance(ts, int | float) else "-"


def _check_folder(url: str) -> None:
    """Fail early, before any output, when a SQLite URL points into a folder that does not exist."""
    try:
        path = getattr(open_store(url, exclusive=False), "path", None)
    except MultiAgentsError as exc:
        fail(str(exc))
    if isinstance(path, str) and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        folder = os.path.dirname(os.path.abspath(path))
        fail(f"cannot create the store {path}: the folder {folder} does not exist")


async def _open_read_only(url: str) -> Store:
    store = open_store(url, exclusive=False)
    path = getattr(store, "path", None)
    if isinstance(path, str) and not os.path.exists(path):
        fail(f"there is no store file at {os.path.abspath(path)}; check --store (or $MULTIAGENTS_STORE)")
    await store.open()
    return store


async def _load_status(url: str, tid: str) -> dict[str, Any]:
    store = await _open_read_only(url)
    try:
        inst = await store.load(tid)
    finally:
        await store.close()
    if inst is None:
        hint = " (memory:// keeps nothing between processes)" if url.startswith("memory") else ""
        fail(f"no workflow with transaction id {tid!r} in {url}{hint}")
    return describe(inst)


def _command() -> str:
    """How to run this CLI from here: ``multiagents`` if it is on PATH, else its path (a fresh checkout
    runs the demo through dev.py, whose .venv is not on PATH)."""
    installed = os.path.join(os.path.dirname(sys.executable), "multiagents")
    on_path = shutil.which("multiagents")
    if on_path and os.path.realpath(on_path) == os.path.realpath(installed):
        return "multiagents"
    if os.path.exists(installed):
        return os.path.relpath(installed) if not os.path.relpath(installed).startswith("..") else installed
    return f"{sys.executable} -m multiagents"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="multiagents")
def cli() -> None:
    """Durable sagas: every workflow ends completed, compensated, or flagged with the reason."""


# ---- demo -----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--orders", default=200, show_default=True, type=click.IntRange(1, 100_000), help="Orders to run."
)
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the failures drawn.")
@click.option(
    "--store",
    default=None,
    help="Store URL; default: a fresh SQLite file in a new temporary folder.",
)
@click.option(
    "--failure-rate",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="How often each service misbehaves.",
)
def demo(orders: int, seed: int, store: str | None, failure_rate: float) -> None:
    """Run orders through the order saga and show how they ended.

    The services fail as real ones do (no stock, declined cards, a flaky carrier, refunds that need a
    person), drawn from --seed, on the embedded default: an in-memory bus and a SQLite file.
    """
    url = store or "sqlite:///" + os.path.join(tempfile.mkdtemp(prefix="multiagents-demo-"), "demo.db")
    with _reported():
        _check_folder(url)
    out = _stdout()
    out.print(
        f"Running {orders} orders through the order saga on the embedded default, store {url}", soft_wrap=True
    )
    with Progress(
        TextColumn("orders"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
    ) as progress:
        task = progress.add_task("orders", total=orders)
        report = _run(lambda: run_demo(orders, seed, url, failure_rate, lambda: progress.advance(task)))

    _print_report(out, report)


def _print_report(out: Console, report: DemoReport) -> None:
    table = Table(title="Outcomes")
    table.add_column("outcome", no_wrap=True)
    table.add_column("why")
    table.add_column("orders", justify="right")
    rows = sorted(report.outcomes.items(), key=lambda kv: (-kv[1], kv[0][1]))
    for state, label in OUTCOMES:
        for (s, why), n in rows:
            if s == state:
                table.add_row(_styled(label), why, str(n))
    table.add_section()
    table.add_row("total", "", str(report.orders))
    out.print(table)
    counts = ", ".join(f"{report.count(s)} {s}" for s, _ in OUTCOMES if report.count(s))
    counts = counts.replace("compensation_failed", "compensation_failed (needing attention)")
    out.print(f"{report.orders} orders: {counts}", soft_wrap=True)
    if report.recovered:
        out.print(f"{report.recovered} of the completed orders got there only by retrying a step")
    rate = report.steps / report.elapsed if report.elapsed else 0.0
    out.print(f"{report.steps} steps run in {report.elapsed:.2f}s ({rate:,.0f} steps/s)")
    out.print("\nInspect an example of each:")
    url = report.store
    for state, label in OUTCOMES:
        for (s, why), tid in report.examples.items():
            if s == state:
                out.print(f"  [bold]{label}[/] ({why}):", highlight=False)
                out.print(f"    {_command()} status {tid} --store {url}", soft_wrap=True)
                if s == "compensation_failed":
                    out.print("  once a person has dealt with it, run the compensations again:")
                    out.print(f"    {_command()} retry {tid} --store {url}", soft_wrap=True)
    out.print("  all of them:")
    out.print(f"    {_command()} list --store {url}", soft_wrap=True)


# ---- status and list ------------------------------------------------------------------------


def _error_text(error: Any) -> str:
    """One line for an error dict; any key may be missing (a condition that raised has no attempt)."""
    if not error:
        return ""
    if not isinstance(error, Mapping):
        return str(error)
    where = [f"step {error['step']}"] if error.get("step") else []
    if error.get("attempt") is not None:
        where.append(f"attempt {error['attempt']}")
    suffix = f" ({', '.join(where)})" if where else ""
    return f"{error.get('category') or '?'}: {error.get('message') or ''}{suffix}"


def _message(error: Any) -> str:
    """The message of an error dict, or the error itself when a record holds a plain string."""
    if isinstance(error, Mapping):
        return str(error.get("message") or "")
    return "" if error is None else str(error)


def _offset(at: Any, t0: Any) -> str:
    """``+1.234s`` from the workflow's start, or nothing when either time is missing or not a number."""
    if isinstance(at, int | float) and isinstance(t0, int | float):
        return f"+{at - t0:.3f}s"
    return ""


@cli.command()
@click.argument("transaction_id")
@store_option
def status(transaction_id: str, store: str) -> None:
    """Show one workflow: state, error, steps, history."""
    st = _run(lambda: _load_status(store, transaction_id))
    out = _stdout()
    out.print(Text.assemble("workflow ", (st["transaction_id"], "bold"), f"  ({st['workflow_id']})"))
    out.print(Text.assemble("state    ", _styled(str(st["state"]))))
    out.print(f"started  {_when(st.get('created_at'))}, last change {_when(st.get('updated_at'))}")
    if st.get("error"):
        out.print(Text.assemble("error    ", (_error_text(st["error"]), "red")))
    for f in st.get("compensation_failures") or ():
        out.print(Text(f"needs attention: {f.get('error')}", style="bold red"))

    out.print(_steps_table(st))
    out.print(_history_table(st))


def _steps_table(st: dict[str, Any]) -> Table:
    steps = Table(title="Steps")
    steps.add_column("step", no_wrap=True)
    steps.add_column("status", no_wrap=True)
    steps.add_column("tries", justify="right")  # short headers leave the width to the error text
    steps.add_column("undos", justify="right")
    steps.add_column("error", ratio=1, min_width=20)
    for name, s in (st.get("steps") or {}).items():
        errors = [str(e) for e in (s.get("error"), s.get("compensation_error")) if e]
        steps.add_row(
            name,
            _styled(str(s.get("status", "?"))),
            str(s.get("attempts", "")),
            str(s.get("compensation_attempts", "")),
            "\n".join(errors),
        )
    return steps


def _history_table(st: dict[str, Any]) -> Table:
    """Every attempt and decision, timed from the workflow's start."""
    history = Table(title="History")
    for col in ("at", "step", "kind", "#", "status"):
        history.add_column(col, no_wrap=True, justify="right" if col in ("at", "#") else "left")
    history.add_column("detail")
    t0 = st.get("created_at")
    for e in st.get("execution_history") or ():
        detail = _message(e.get("error")) or str(e.get("reason") or "")
        retry_at = _offset(e.get("next_attempt_at"), t0)
        if retry_at:
            detail += f" (retry at {retry_at})"
        history.add_row(
            _offset(e.get("completed_at") or e.get("started_at"), t0),
            str(e.get("step") or "-"),
            str(e.get("kind") or ""),
            "" if e.get("attempt") is None else str(e["attempt"]),
            _styled(str(e.get("status") or "")),
            detail,
        )
    return history


async def _list(url: str, state: str | None, limit: int) -> list[dict[str, Any]]:
    store = await _open_read_only(url)
    try:
        found = await store.list_instances(state=None if state is None else SagaState(state), limit=limit)
    finally:
        await store.close()
    return [describe(i) for i in found]


@cli.command(name="list")
@click.option(
    "--state", type=click.Choice([s.value for s in SagaState]), help="Only workflows in this state."
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="At most this many.")
@store_option
def list_(state: str | None, limit: int, store: str) -> None:
    """List workflows, newest first."""
    found = _run(lambda: _list(store, state, limit))
    out = _stdout()
    if not found:
        hint = " (memory:// keeps nothing between processes)" if store.startswith("memory") else ""
        out.print(f"no workflows{' in state ' + state if state else ''} in {store}{hint}")
        return
    rows = []
    for st in found:
        failures = st.get("compensation_failures")
        why = str(failures[0].get("error") or "") if failures else _message(st.get("error"))
        started = _when(st["created_at"], "%m-%d %H:%M:%S")
        rows.append((st["transaction_id"], str(st["state"]), st["workflow_id"], started, why or ""))
    # The fixed columns keep their width (a transaction id must stay whole to be copied); "why" gets
    # what is left, cut short with an ellipsis. On a narrow terminal the least needed columns go.
    headers = ["transaction id", "state", "workflow", "started", "why"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    keep = list(range(len(headers)))
    while True:
        fixed = sum(widths[i] for i in keep if i != 4) + 3 * len(keep) + 1
        if out.width - fixed >= (12 if 4 in keep else 0) or len(keep) == 2:
            break
        keep.pop()
    table = Table(title=f"Workflows in {store}")
    for i in keep:
        if i == 4:
            table.add_column("why", no_wrap=True, overflow="ellipsis", max_width=out.width - fixed)
        else:
            table.add_column(headers[i], no_wrap=True, min_width=widths[i])
    for row in rows:
        table.add_row(*(_styled(row[i]) if i == 1 else row[i] for i in keep))
    out.print(table)


# ---- retry ------------------------------------------------------------------------------------


async def _retry(url: str, bus: str, tid: str) -> dict[str, Any]:
    current = await _load_status(url, tid)
    if current["workflow_id"] != WORKFLOW_ID:
        fail(
            f"workflow {tid} runs {current['workflow_id']!r}, which this command does not know: "
            "only the demo's workflow can be retried here; elsewhere call "
            "Runtime.retry_compensations(tid) from a process that registers the workflow"
        )
    if current["state"] != SagaState.COMPENSATION_FAILED:
        fail(f"workflow {tid} is {current['state']}; only compensation_failed workflows can be retried")
    # The person has fixed what the failed compensation reported, so this time it goes through.
    workers, workflow = build(Shop())
    async with Runtime(workers=workers, workflows=[workflow], store=url, bus=bus) as rt:
        await rt.retry_compensations(tid)
        try:
            return await rt.wait(tid, timeout=60)
        except TimeoutError as exc:
            fail(str(exc))


@cli.command()
@click.argument("transaction_id")
@store_option
@click.option(
    "--bus",
    envvar="MULTIAGENTS_BUS",
    default="memory://",
    show_default=True,
    help="Bus URL; $MULTIAGENTS_BUS if set.",
)
def retry(transaction_id: str, store: str, bus: str) -> None:
    """Run a workflow's failed compensations again.

    Only for compensation_failed workflows of the demo: other workflows need a Runtime that registers
    their definition (Runtime.retry_compensations).
    """
    st = _run(lambda: _retry(store, bus, transaction_id))
    out = _stdout()
    out.print(Text.assemble(f"workflow {transaction_id} is now ", _styled(str(st["state"]))))
    for f in st["compensation_failures"]:
        out.print(Text(f"still needs attention: {f['error']}", style="bold red"))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``multiagents`` script and of ``python -m multiagents``."""
    cli.main(args=argv, prog_name="multiagents")
