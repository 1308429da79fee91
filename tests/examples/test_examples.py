"""The examples run on the embedded default and end the way their documentation says."""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the examples live next to src/, not inside the package
    sys.path.insert(0, str(ROOT))

from examples import error_tracking, external_service, resources, saga, validation  # noqa: E402
from multiagents import FakeClock, Runtime, SagaState  # noqa: E402


def compensation_entries(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in status["execution_history"] if e["kind"] == "compensate" and e.get("worker")]


# ---- section 5: the saga ------------------------------------------------------------------------


async def test_seed_saga_shipment_failure_compensates_payment_then_inventory(clock: FakeClock) -> None:
    """In the seed's own saga, a create_shipment that keeps failing undoes charge_payment and then
    reserve_inventory, each exactly once, each given the output of the step it undoes."""
    saga.shop.reset()
    saga.shop.shipment_failures = 99
    wf = saga.create_saga_workflow()
    async with Runtime(
        workers=saga.WORKERS, workflows=[wf], store="memory://", clock=clock, rng=random.Random(3)
    ) as rt:
        tid = await rt.execute_workflow(wf.id, saga.order("S1", {"product_1": 3, "product_2": 2}))
        status = await clock.run_until(rt.wait(tid))

    assert status["state"] is SagaState.COMPENSATED
    assert status["steps"]["step3_create_shipment"]["attempts"] == 3
    assert status["steps"]["step4_send_notification"]["status"] == "pending"
    entries = compensation_entries(status)
    assert [(e["step"], e["worker"], e["status"]) for e in entries] == [
        ("step2_charge_payment", "refund_payment", "compensated"),
        ("step1_reserve_inventory", "release_inventory", "compensated"),
    ]

    payment = status["step_results"]["step2_charge_payment"]
    reservation = status["step_results"]["step1_reserve_inventory"]
    refunds = saga.shop.operations("refund_payment")
    assert refunds == [
        (
            "refund_payment",
            {"payment_id": payment["payment_id"], "transaction_id": payment["transaction_id"]},
        )
    ]
    assert saga.shop.operations("get_reservation") == [
        ("get_reservation", {"reservation_id": reservation["reservation_id"]})
    ]
    # The refund came before the release, and the world is as it was before the order.
    ops = [op for op, _ in saga.shop.log]
    assert ops.index("refund_payment") < ops.index("get_reservation")
    assert "cancel_shipment" not in ops
    assert saga.shop.payments[payment["payment_id"]]["status"] == "refunded"
    assert saga.shop.stock == saga.INITIAL_STOCK
    assert saga.shop.reservations == {}


async def test_seed_saga_without_fail_if_ships_a_declined_payment(clock: FakeClock) -> None:
    """The seed's definition has no fail_if, so a declined payment is just output and the order ships."""
    saga.shop.reset()
    wf = saga.create_saga_workflow()
    async with Runtime(workers=saga.WORKERS, workflows=[wf], store="memory://", clock=clock) as rt:
        status = await clock.run_until(rt.run(wf.id, saga.order("S2", {"product_1": 1}, amount=20000)))

    assert status["state"] is SagaState.COMPLETED
    assert status["step_results"]["step2_charge_payment"]["status"] == "payment_declined"
    assert len(saga.shop.shipments) == 1


@pytest.fixture
async def saga_outcomes(clock: FakeClock) -> dict[str, dict[str, Any]]:
    return await clock.run_until(saga.main(clock=clock, rng=random.Random(1)))


async def test_saga_happy_path_runs_every_step_and_undoes_nothing(
    saga_outcomes: dict[str, dict[str, Any]],
) -> None:
    """An order with stock and a small amount completes; every step ran once, no compensation."""
    o = saga_outcomes["happy_path"]
    assert o["state"] == "completed"
    assert o["ran"] == ["reserve_inventory", "charge_payment", "create_shipment", "send_notification"]
    assert o["compensations"] == []


async def test_saga_insufficient_inventory_fails_with_nothing_to_undo(
    saga_outcomes: dict[str, dict[str, Any]],
) -> None:
    """product_3 has no stock: fail_if fails step 1, which releases its own partial reservation."""
    o = saga_outcomes["insufficient_inventory"]
    assert o["state"] == "failed"
    assert o["ran"] == ["reserve_inventory"]
    assert o["compensations"] == []
    assert "Only 0 units of product_3 available" in o["error"]
    partial = [
        d for op, d in saga.shop.log if op == "release_inventory_item" and d["product_id"] == "product_1"
    ]
    assert {"product_id": "product_1", "quantity": 1} in partial


async def test_saga_declined_payment_releases_inventory(saga_outcomes: dict[str, dict[str, Any]]) -> None:
    """An amount over 10000 is declined: fail_if fails step 2 and only the reservation is undone."""
    o = saga_outcomes["payment_declined"]
    assert o["state"] == "compensated"
    assert o["ran"] == ["reserve_inventory", "charge_payment"]
    assert o["compensations"] == ["release_inventory"]
    assert o["error"] == "step 'step2_charge_payment' failed: payment_declined"


async def test_saga_flaky_shipment_is_retried_and_completes(saga_outcomes: dict[str, dict[str, Any]]) -> None:
    """One ConnectionError from the carrier is transient: the step's second attempt succeeds."""
    o = saga_outcomes["flaky_shipment"]
    assert o["state"] == "completed"
    assert o["attempts"]["step3_create_shipment"] == 2
    assert o["compensations"] == []


async def test_saga_shipment_down_undoes_payment_then_inventory(
    saga_outcomes: dict[str, dict[str, Any]],
) -> None:
    """A carrier that never answers exhausts three attempts; payment and inventory are undone in reverse."""
    o = saga_outcomes["shipment_down"]
    assert o["state"] == "compensated"
    assert o["ran"].count("create_shipment") == 3
    assert o["compensations"] == ["refund_payment", "release_inventory"]


async def test_saga_notification_failure_undoes_all_three_steps(
    saga_outcomes: dict[str, dict[str, Any]],
) -> None:
    """A permanent failure in the last step cancels the shipment, refunds, then releases, in that order."""
    o = saga_outcomes["notification_fails"]
    assert o["state"] == "compensated"
    assert o["ran"].count("send_notification") == 1
    assert o["compensations"] == ["cancel_shipment", "refund_payment", "release_inventory"]


async def test_saga_release_needing_a_person_ends_compensation_failed_then_retry_fixes_it(
    saga_outcomes: dict[str, dict[str, Any]],
) -> None:
    """release_inventory returning requires_manual_intervention ends compensation_failed; once the
    warehouse is back, retry_compensations reruns only that compensation and the saga is compensated."""
    stuck = saga_outcomes["manual_intervention"]
    assert stuck["state"] == "compensation_failed"
    assert stuck["compensations"] == ["refund_payment", "release_inventory"]
    assert stuck["failed_compensations"] == ["release_inventory"]
    assert [f["step"] for f in stuck["compensation_failures"]] == ["step1_reserve_inventory"]
    assert "Warehouse system offline" in stuck["compensation_failures"][0]["error"]

    retried = saga_outcomes["manual_intervention_retried"]
    assert retried["state"] == "compensated"
    assert retried["compensations"] == ["refund_payment", "release_inventory", "release_inventory"]
    assert retried["compensation_failures"] == []


async def test_saga_main_leaves_only_completed_orders_holding_stock(
    saga_outcomes: dict[str, dict[str, Any]],
) -> None:
    """After every scenario, stock is held only by the two orders that completed."""
    assert saga.shop.stock == {"product_1": 8, "product_2": 3, "product_3": 0}
    assert sorted(r["order_id"] for r in saga.shop.reservations.values()) == ["A1", "A4"]
    refunded = sorted(p["order_id"] for p in saga.shop.payments.values() if p["status"] == "refunded")
    assert refunded == ["A5", "A6", "A7"]


async def test_saga_shipment_retry_waits_the_policy_interval(clock: FakeClock) -> None:
    """The checked saga's shipment retry waits exactly 0.2 s of (fake) time after a failed attempt."""
    saga.shop.reset()
    saga.shop.shipment_failures = 2
    wf = saga.create_checked_saga_workflow()
    async with Runtime(workers=saga.WORKERS, workflows=[wf], store="memory://", clock=clock) as rt:
        status = await clock.run_until(rt.run(wf.id, saga.order("T1", {"product_1": 1})))

    assert status["state"] is SagaState.COMPLETED
    attempts = [
        e
        for e in status["execution_history"]
        if e["step"] == "step3_create_shipment" and e["kind"] == "execute"
    ]
    assert [e["status"] for e in attempts] == ["failed", "failed", "completed"]
    gaps = [b["started_at"] - a["completed_at"] for a, b in itertools.pairwise(attempts)]
    assert gaps == [pytest.approx(0.2), pytest.approx(0.4)]


# ---- section 1: validation ----------------------------------------------------------------------


async def test_validation_valid_request_completes() -> None:
    """A request that passes both validators reaches apply_action and the workflow completes."""
    outcomes = await validation.main()
    o = outcomes["valid"]
    assert o["state"] == "completed"
    assert o["ran"] == ["validation_worker", "schema_validated_worker", "apply_action"]
    assert len(validation.applied) == 1


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("missing_field", "Missing required fields: ['data']"),
        ("bad_amount", "amount must be a non-negative number"),
        ("bad_action_type", "action_type must be one of"),
    ],
)
async def test_validation_failure_is_not_retried_or_compensated(scenario: str, message: str) -> None:
    """A ValueError from validation_worker fails the workflow at once: one attempt, no compensation."""
    o = (await validation.main())[scenario]
    assert o["state"] == "failed"
    assert o["failed_step"] == "validate_request"
    assert o["error_category"] == "validation"
    assert message in o["error"]
    assert o["attempts"] == {"validate_request": 1, "validate_profile": 0, "apply_action": 0}
    assert o["ran"] == ["validation_worker"]
    assert o["compensations"] == []


async def test_schema_validation_lists_every_error_and_undoes_nothing() -> None:
    """DataValidator reports all schema errors at once; the step before it has no compensation."""
    o = (await validation.main())["bad_profile"]
    assert o["state"] == "failed"
    assert o["failed_step"] == "validate_profile"
    assert o["error_category"] == "validation"
    assert "email must be at least 5 characters" in o["error"]
    assert "age must be <= 150" in o["error"]
    assert o["attempts"]["validate_profile"] == 1
    assert o["compensations"] == []
    assert [a["user_id"] for a in validation.applied] == ["user-42"]  # only the valid run applied


# ---- section 2: resources -----------------------------------------------------------------------


@pytest.fixture
async def resource_outcomes() -> dict[str, dict[str, Any]]:
    return await resources.main()


async def test_resources_full_and_partial_allocation_complete(
    resource_outcomes: dict[str, dict[str, Any]],
) -> None:
    """Every request granted, or some refused, the workflow completes; refusals say if a retry may help."""
    full = resource_outcomes["full_success"]
    assert full["state"] == "completed"
    assert full["allocation_status"] == "allocation_successful"
    assert len(full["allocated"]) == 2

    partial = resource_outcomes["partial_allocation"]
    assert partial["state"] == "completed"
    assert partial["allocation_status"] == "partial_allocation"
    assert [r.split("-")[0] for r in partial["allocated"]] == ["compute"]
    refusals = {f["type"]: f["retry_possible"] for f in partial["failed_allocations"]}
    assert refusals == {"storage": False, "network": True}  # quota exceeded vs temporarily unavailable
    assert partial["compensations"] == []


async def test_resources_nothing_allocated_fails_without_compensation(
    resource_outcomes: dict[str, dict[str, Any]],
) -> None:
    """fail_if turns the seed's "allocation_failed" dict into a failure; nothing completed, nothing undone."""
    o = resource_outcomes["nothing_allocated"]
    assert o["state"] == "failed"
    assert o["allocation_status"] == "allocation_failed"
    assert o["ran"] == ["resource_allocator"]
    assert o["compensations"] == []


async def test_resources_unknown_type_cleans_up_inside_the_worker(
    resource_outcomes: dict[str, dict[str, Any]],
) -> None:
    """An unknown resource type raises WorkerExecutionError after the worker frees what it took."""
    o = resource_outcomes["unknown_type"]
    assert o["state"] == "failed"
    assert o["error"] == "Resource allocation failed: Unknown resource type: gpu"
    assert o["compensations"] == []
    taken = [rid for op, rid in resources.datacenter.log if op == "allocate" and rid.startswith("compute")]
    released = [rid for op, rid in resources.datacenter.log if op == "release"]
    assert taken[2] in released  # the compute of the third allocating request (gpu) was given back


async def test_resources_later_failure_releases_everything(
    resource_outcomes: dict[str, dict[str, Any]],
) -> None:
    """deploy failing for good runs release_resources once, which frees every allocated resource."""
    o = resource_outcomes["deploy_fails"]
    assert o["state"] == "compensated"
    assert o["compensations"] == ["release_resources"]
    assert o["release"]["status"] == "release_completed"
    assert o["release"]["released_resources"] == o["allocated"]
    assert o["release"]["failed_releases"] == []
    assert not set(o["allocated"]) & set(resources.datacenter.allocated)


async def test_resources_stuck_release_is_reported_for_a_person(
    resource_outcomes: dict[str, dict[str, Any]],
) -> None:
    """A resource that cannot be freed is listed in failed_releases with requires_manual_intervention,
    and that nested flag makes the workflow end compensation_failed: a person has to free it."""
    o = resource_outcomes["release_fails"]
    compute, network = o["allocated"]
    assert o["state"] == "compensation_failed"
    assert o["release"]["released_resources"] == [compute]
    [stuck] = o["release"]["failed_releases"]
    assert stuck["resource_id"] == network
    assert stuck["requires_manual_intervention"] is True
    assert network in resources.datacenter.allocated


# ---- section 3: external services ---------------------------------------------------------------


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make the example's in-process sleeps instant; returns the delays it asked for."""
    delays: list[float] = []

    async def no_sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(external_service, "sleep", no_sleep)
    return delays


async def test_retry_on_failure_backs_off_then_succeeds(backoff: list[float]) -> None:
    """Two retryable errors are retried in-process after 1 s and 1.5 s; the third call answers."""
    external_service.SCRIPTS["svc"] = ["connection_error", "service_unavailable"]
    try:
        response = await external_service.call_external_service("svc", {"q": 1})
    finally:
        external_service.SCRIPTS.clear()
    assert response["result"] == "Success from svc"
    assert backoff == [1.0, 1.5, 0.1]  # two backoffs, then the simulated processing time


async def test_external_service_outcomes(backoff: list[float]) -> None:
    """Each forced failure ends as the seed's caller says: recovered, permanent, or a returned status."""
    outcomes = await external_service.main()

    recovered = outcomes["recovers_after_retries"]
    assert (recovered["state"], recovered["call_status"], recovered["attempts"]) == (
        "completed",
        "success",
        1,
    )

    exhausted = outcomes["retries_exhausted"]
    assert exhausted["state"] == "failed"
    assert exhausted["attempts"] == 1  # retried inside the attempt, never by the engine
    assert exhausted["error_category"] == "permanent"
    assert "Operation failed after 3 attempts: Service temporarily unavailable" in exhausted["error"]

    limited = outcomes["rate_limited"]
    assert (limited["state"], limited["call_status"], limited["retry_after"]) == (
        "completed",
        "rate_limited",
        120,
    )
    strict = outcomes["rate_limited_strict"]
    assert strict["state"] == "failed"
    assert strict["error"] == "step 'call' failed: Rate limit exceeded"

    assert outcomes["authentication_failed"]["call_status"] == "authentication_failed"
    assert outcomes["times_out"]["call_status"] == "timeout"
    assert all(r["state"] == "completed" for r in outcomes["random"])


async def test_external_service_random_failures_repeat_with_the_same_seed(backoff: list[float]) -> None:
    """Seeding the example's RNG makes the random outcomes, response ids included, repeat exactly."""
    first = (await external_service.main(random_seed=5))["random"]
    first_delays = list(backoff)
    second = (await external_service.main(random_seed=5))["random"]
    assert first == second
    assert backoff[len(first_delays) :] == first_delays
    assert [r["call_status"] for r in first].count("rate_limited") == 2


# ---- section 6: error tracking ------------------------------------------------------------------


async def test_error_tracking_records_each_failure_once() -> None:
    """Three failing inputs are recorded once each, by type, and none is retried."""
    outcome = await error_tracking.main()
    runs = outcome["runs"]
    assert {data: r["state"] for data, r in runs.items()} == {
        "ok": "completed",
        "": "failed",
        "connection_fail": "failed",
        "unexpected": "failed",
    }
    assert runs["ok"]["result"] == "Processed: ok"
    assert runs[""]["error_category"] == "validation"
    assert runs["connection_fail"]["error_category"] == "permanent"
    assert runs["unexpected"]["error"] == "Unexpected error: Something unexpected happened"
    assert all(r["attempts"] == 1 for r in runs.values())

    summary = outcome["summary"]
    assert summary["total_errors"] == 3
    assert summary["recent_errors_1h"] == 3
    assert summary["error_counts_by_type"] == {
        "validation_error": 1,
        "connection_error": 1,
        "unexpected_error": 1,
    }
    assert summary["error_rates"]["connection_error"] == pytest.approx(100 / 3)
    assert [p for p, _ in summary["top_error_patterns"]] == [
        "error_reporting_worker:validation_error",
        "error_reporting_worker:connection_error",
        "error_reporting_worker:unexpected_error",
    ]


async def test_error_tracking_main_starts_from_an_empty_tracker() -> None:
    """Running the example twice reports the same three errors, not six."""
    await error_tracking.main()
    assert (await error_tracking.main())["summary"]["total_errors"] == 3
