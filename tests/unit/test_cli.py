"""The command line: the demo's report, status/list/retry on its store, and one-line errors on bad input.

The demo runs on the real clock with retry intervals of hundredths of a second: a batch takes well under
a second, so these tests wait for nothing longer than that.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from multiagents.cli import cli, main
from multiagents.store.sqlite import SQLiteStore

ROW = re.compile(
    r"^│ (completed|compensated|failed|needs attention|cancelled)\s*│ (.*?)\s*│\s*(\d+) │$", re.M
)
EXAMPLE = re.compile(r"multiagents status ([0-9a-f]{32}) --store (\S+)")


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli, list(args))


def outcome_rows(output: str) -> list[tuple[str, str, int]]:
    return [(m[1], m[2], int(m[3])) for m in ROW.finditer(output)]


def examples(output: str) -> dict[str, str]:
    """Transaction id of the example shown for each "outcome (why)" heading."""
    found = {}
    for heading, line in zip(output.splitlines(), output.splitlines()[1:], strict=False):
        m = EXAMPLE.search(line)
        if m and heading.strip().endswith(":"):
            found[heading.strip().split(" (")[0]] = m[1]
    return found


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A demo of 200 orders (seed 1): its store URL and its output."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    result = invoke("demo", "--orders", "200", "--seed", "1", "--store", url)
    assert result.exit_code == 0, result.output
    return url, result.output


def test_demo_of_30_orders_reports_outcomes_that_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`demo --orders 30 --seed 1` exits 0 with an outcome table whose counts sum to 30, in a fresh store."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = invoke("demo", "--orders", "30", "--seed", "1")
    assert result.exit_code == 0, result.output
    rows = outcome_rows(result.output)
    assert rows and sum(n for _, _, n in rows) == 30
    assert re.search(r"^│ total\s*│\s*│\s*30 │$", result.output, re.M)
    assert "30 orders: " in result.output
    assert re.search(r"\d+ steps run in \d+\.\d\ds \([\d,]+ steps/s\)", result.output)
    stores = {m[2] for m in EXAMPLE.finditer(result.output)}
    assert len(stores) == 1 and stores.pop().startswith(f"sqlite:///{tmp_path}")


def test_demo_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    """Two runs with the same seed end with the same outcomes, whatever the attempts' interleaving."""
    runs = [
        invoke("demo", "--orders", "60", "--seed", "5", "--store", f"sqlite:///{tmp_path / f'{i}.db'}")
        for i in range(2)
    ]
    assert [r.exit_code for r in runs] == [0, 0]
    assert outcome_rows(runs[0].output) == outcome_rows(runs[1].output)


def test_demo_shows_every_kind_of_ending_with_its_reason(demo_store: tuple[str, str]) -> None:
    """200 orders show each failure the demo simulates, grouped under its outcome with its reason."""
    _, output = demo_store
    rows = {(outcome, why) for outcome, why, _ in outcome_rows(output)}
    assert ("completed", "every step completed") in rows
    assert ("failed", "insufficient inventory") in rows
    assert ("compensated", "payment declined") in rows
    assert ("compensated", "shipping service unreachable after 3 attempts") in rows
    assert ("needs attention", "refund needs manual intervention") in rows
    assert sum(n for _, _, n in outcome_rows(output)) == 200
    assert set(examples(output)) == {"completed", "compensated", "failed", "needs attention"}


def test_status_shows_state_error_steps_and_history(demo_store: tuple[str, str]) -> None:
    """`status` of the demo's needs-attention example shows its state, the reasons, steps and history."""
    url, output = demo_store
    tid = examples(output)["needs attention"]
    result = invoke("status", tid, "--store", url)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "state    compensation_failed" in out
    assert "needs attention: compensation of step 'charge_payment'" in out
    assert "Steps" in out and "History" in out
    for step in ("reserve_inventory", "charge_payment", "create_shipment", "send_notification"):
        assert step in out


def test_list_filters_by_state_and_limits(demo_store: tuple[str, str]) -> None:
    """`list --state failed` lists only failed workflows, newest first, at most --limit of them."""
    url, output = demo_store
    failed = dict((o, n) for o, _, n in outcome_rows(output) if o == "failed")["failed"]
    result = invoke("list", "--state", "failed", "--limit", "500", "--store", url)
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^│ ([0-9a-f]{32}) │ (\w+)", result.output, re.M)
    assert len(listed) == failed
    assert {state for _, state in listed} == {"failed"}
    limited = invoke("list", "--limit", "3", "--store", url)
    assert len(re.findall(r"^│ [0-9a-f]{32} │", limited.output, re.M)) == 3


def test_retry_runs_the_failed_compensation_again(tmp_path: Path) -> None:
    """`retry` on a demo workflow that needs attention ends it compensated; a second retry is refused."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    demo = invoke("demo", "--orders", "200", "--seed", "1", "--store", url)
    tid = examples(demo.output)["needs attention"]
    result = invoke("retry", tid, "--store", url)
    assert result.exit_code == 0, result.output
    assert f"workflow {tid} is now compensated" in result.output
    assert "state    compensated" in invoke("status", tid, "--store", url).output
    again = invoke("retry", tid, "--store", url)
    assert again.exit_code == 1
    assert (
        again.output.strip()
        == f"workflow {tid} is compensated; only compensation_failed workflows can be retried"
    )


def test_status_of_unknown_transaction_is_one_line_and_exit_1(demo_store: tuple[str, str]) -> None:
    """An unknown transaction id prints one sentence, exits 1, and shows no traceback."""
    url, _ = demo_store
    result = invoke("status", "no-such-id", "--store", url)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.strip() == f"no workflow with transaction id 'no-such-id' in {url}"
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("sqlite:///{tmp}/missing.db", "there is no store file at {tmp}/missing.db"),
        ("postgresq://x", "unknown store URL 'postgresq://x'"),
        ("sqlite://", "names no file"),
    ],
)
def test_bad_store_is_one_line_and_exit_1(tmp_path: Path, store: str, message: str) -> None:
    """A missing store file or a bad URL is one red sentence and exit 1; no file is created on the way."""
    for command in (["status", "some-id"], ["list"]):
        result = invoke(*command, "--store", store.format(tmp=tmp_path))
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)
        assert message.format(tmp=tmp_path) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "missing.db").exists()


def test_demo_into_a_missing_folder_fails_before_running(tmp_path: Path) -> None:
    """A demo store in a folder that does not exist is refused with one line before any order runs."""
    result = invoke("demo", "--orders", "5", "--store", f"sqlite:///{tmp_path}/nope/demo.db")
    assert result.exit_code == 1
    assert "Running" not in result.stdout
    assert result.stderr.strip().endswith(f"the folder {tmp_path}/nope does not exist")


def test_retry_refuses_workflows_it_has_no_definition_for(tmp_path: Path) -> None:
    """`retry` of a workflow the command line does not know says what is missing instead of guessing."""
    from multiagents import Runtime, WorkflowBuilder, worker

    @worker("noop")
    async def noop(ctx: dict[str, object]) -> dict[str, object]:
        return {}

    url = f"sqlite:///{tmp_path / 'other.db'}"

    async def one() -> str:
        async with Runtime(workflows=[WorkflowBuilder("other").add_step("a", noop).build()], store=url) as rt:
            tid = await rt.execute_workflow("other", {})
            await rt.wait(tid, timeout=10)
            return tid

    tid = asyncio.run(one())
    result = invoke("retry", tid, "--store", url)
    assert result.exit_code == 1
    assert "Runtime.retry_compensations" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_store_defaults_to_the_environment_and_reads_a_locked_file(demo_store: tuple[str, str]) -> None:
    """`status` takes $MULTIAGENTS_STORE as its store and reads it while another owner holds the lock."""
    url, output = demo_store
    tid = examples(output)["completed"]
    owner = SQLiteStore(url[len("sqlite:///") :])
    asyncio.run(owner.open())  # takes the exclusive lock, as a running Runtime would
    try:
        result = invoke("status", tid, env={"MULTIAGENTS_STORE": url})
    finally:
        asyncio.run(owner.close())
    assert result.exit_code == 0, result.output
    assert "state    completed" in result.output


def test_main_is_the_script_entry_point() -> None:
    """`main()` runs the command group under the name `multiagents`."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
