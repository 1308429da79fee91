"""The examples run on the embedded default and end the way their documentation says."""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the examples live next to src/, not inside the package
    sys.path.insert(0, str(ROOT))

from examples import (  # noqa: E402
    circuit_breaker,
    error_tracking,
    external_service,
    resources,
    saga,
    validation,
)
from multiagents import (  # noqa: E402
    CircuitBreaker,
    CircuitState,
    ErrorTracker,
    FakeClock,
    Runtime,
    SagaState,
    SystemClock,
)
from multiagents.core.exceptions import WorkerExecutionError  # noqa: E402


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
    # user-42 from this workflow, user-7 from the schema_model one: no failing request applied anything
    assert [a["user_id"] for a in validation.applied] == ["user-42", "user-7"]


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
    assert [a["user_id"] for a in validation.applied] == ["user-42", "user-7"]  # only the valid runs


async def test_schema_model_valid_input_reaches_the_worker_as_a_model() -> None:
    """input_model=schema_model(USER_SCHEMA) lets valid input through, as a model, to every step."""
    outcomes = await validation.main()
    o = outcomes["schema_model_valid"]
    assert o["state"] == "completed"
    assert o["attempts"] == {"register_profile": 1, "apply_action": 1}
    assert validation.registered == ["user-7"]


async def test_schema_model_bad_input_fails_once_listing_every_field() -> None:
    """Input breaking every USER_SCHEMA rule fails register_profile once, as validation, naming each field,
    without calling the function and without anything to undo."""
    o = (await validation.main())["schema_model_bad_profile"]
    assert o["state"] == "failed"
    assert o["failed_step"] == "register_profile"
    assert o["error_category"] == "validation"
    assert o["attempts"] == {"register_profile": 1, "apply_action": 0}
    assert o["compensations"] == []
    problems = o["error"].split("\n  - ")[1:]
    assert problems == [
        "user_id: must be at least 1 characters, got 0",
        "email: must be at least 5 characters, got 3",
        "age: must be <= 150",
        "balance: expected float, got int",
    ]
    assert validation.registered == ["user-7"]  # only the valid run called the function


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


class RecordingClock(FakeClock):
    """A FakeClock that remembers every wait it was asked for, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await super().sleep(seconds)


@pytest.fixture
def retry_clock() -> Iterator[RecordingClock]:
    """The example's retries wait on a recording FakeClock; its scripts and retry log start empty."""
    recording = RecordingClock()
    external_service.retry_clock.use(recording)
    external_service.retry_events.clear()
    try:
        yield recording
    finally:
        external_service.retry_clock.use(None)
        external_service.SCRIPTS.clear()


async def test_retry_on_failure_backs_off_as_the_seed_then_succeeds(
    retry_clock: RecordingClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two retryable errors are retried after 1 s and then 1.5 s (backoff_factor 1.5); the third call
    answers, and each retry prints the seed's line."""
    external_service.SCRIPTS["svc"] = ["connection_error", "service_unavailable"]
    started = retry_clock.now()
    response = await retry_clock.run_until(external_service.call_external_service("svc", {"q": 1}))
    assert response["result"] == "Success from svc"
    assert retry_clock.slept == [1.0, 1.5, 0.1]  # two backoffs, then the simulated processing time
    assert retry_clock.now() - started == pytest.approx(2.6)
    assert [(e.attempt, e.delay) for e in external_service.retry_events] == [(1, 1.0), (2, 1.5)]
    assert capsys.readouterr().out.splitlines() == [
        "Attempt 1 failed: Failed to connect to service. Retrying in 1s...",
        "Attempt 2 failed: Service temporarily unavailable. Retrying in 1.5s...",
    ]


async def test_retry_on_failure_exhausted_raises_the_seeds_worker_execution_error(
    retry_clock: RecordingClock,
) -> None:
    """Three failures in a row make exactly three calls and raise WorkerExecutionError with the seed's
    message, chained to the last error."""
    external_service.SCRIPTS["svc"] = ["service_unavailable"] * 3 + ["connection_error"]
    with pytest.raises(WorkerExecutionError) as raised:
        await retry_clock.run_until(external_service.call_external_service("svc", {}))
    assert str(raised.value) == "Operation failed after 3 attempts: Service temporarily unavailable"
    assert isinstance(raised.value.__cause__, external_service.ServiceUnavailableError)
    assert external_service.SCRIPTS["svc"] == ["connection_error"]  # no fourth call
    assert retry_clock.slept == [1.0, 1.5]


@pytest.mark.parametrize(
    ("outcome", "error"),
    [("rate_limit", "RateLimitError"), ("authentication", "AuthenticationError")],
)
async def test_retry_on_failure_raises_other_errors_at_once(
    retry_clock: RecordingClock, outcome: str, error: str
) -> None:
    """An exception outside the seed's retryable list is raised unchanged after one call, without waiting,
    even a RateLimitError that carries retry_after."""
    external_service.SCRIPTS["svc"] = [outcome, "connection_error"]
    with pytest.raises(getattr(external_service, error)):
        await retry_clock.run_until(external_service.call_external_service("svc", {}))
    assert external_service.SCRIPTS["svc"] == ["connection_error"]
    assert retry_clock.slept == []


async def test_external_service_outcomes(clock: FakeClock) -> None:
    """Each forced failure ends as the seed's caller says: recovered, permanent, or a returned status."""
    outcomes = await clock.run_until(external_service.main(clock=clock))

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
    assert exhausted["error"] == (
        "Unexpected error calling billing_api: "
        "Operation failed after 3 attempts: Service temporarily unavailable"
    )

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
    # The two retried scenarios waited the seed's backoff, in fake time.
    assert [e.delay for e in external_service.retry_events][:4] == [1.0, 1.5, 1.0, 1.5]
    assert isinstance(external_service.retry_clock.inner, SystemClock)  # main put the real clock back


async def test_external_service_random_failures_repeat_with_the_same_seed(clock: FakeClock) -> None:
    """Seeding the example's RNG makes the random outcomes, response ids and retries included, repeat."""
    first = (await clock.run_until(external_service.main(random_seed=5, clock=clock)))["random"]
    first_retries = [(e.attempt, e.delay) for e in external_service.retry_events]
    second = (await clock.run_until(external_service.main(random_seed=5, clock=clock)))["random"]
    assert first == second
    assert [(e.attempt, e.delay) for e in external_service.retry_events] == first_retries
    assert [r["call_status"] for r in first].count("rate_limited") == 2


# ---- section 4: circuit breaker -----------------------------------------------------------------


@pytest.fixture
async def breaker_outcome() -> dict[str, Any]:
    return await circuit_breaker.main()


async def test_seed_breaker_opens_after_exactly_its_threshold(breaker_outcome: dict[str, Any]) -> None:
    """payment_service's breaker (threshold 3) lets three failing calls through, opens on the third,
    and then the seed's worker reports circuit_breaker_open with retry_after without calling."""
    story = breaker_outcome["seed_worker"]
    failing = story["failing"]
    assert [f["status"] for f in failing] == ["service_call_failed"] * 3
    assert [f["circuit_breaker_state"] for f in failing] == ["closed", "closed", "open"]
    assert [f["failure_count"] for f in failing] == [1, 2, 3]
    assert [f["service_calls"] for f in failing] == [1, 2, 3]
    assert failing[0]["error"] == "Failed to connect to payment_service"

    refused = story["refused"]
    assert refused == {
        "status": "circuit_breaker_open",
        "error": "Circuit breaker for payment_service is OPEN",
        "service_name": "payment_service",
        "retry_after": 30,
        "alternative_action": "use_cached_data_or_fallback",
        "at": story["opened_at"],
        "service_calls": 3,
    }


async def test_seed_breaker_sends_one_probe_after_recovery_timeout_and_closes_on_success(
    breaker_outcome: dict[str, Any],
) -> None:
    """One second before recovery_timeout the breaker still refuses; at 30 s one probe goes through while
    a call beside it is refused, and the probe's success closes the breaker."""
    story = breaker_outcome["seed_worker"]
    assert story["still_refused"]["status"] == "circuit_breaker_open"
    assert story["still_refused"]["at"] - story["opened_at"] == 29
    assert story["still_refused"]["service_calls"] == 3

    probe, beside = story["probe"], story["beside_probe"]
    assert probe["at"] - story["opened_at"] == 30
    assert (probe["status"], probe["circuit_breaker_state"]) == ("success", "closed")
    assert beside["status"] == "circuit_breaker_open"
    assert probe["service_calls"] == beside["service_calls"] == 4  # only the probe reached the service

    assert (story["after"]["status"], story["after"]["circuit_breaker_state"]) == ("success", "closed")
    assert story["after"]["service_calls"] == 5
    assert (story["final_state"], story["final_failure_count"]) == ("closed", 0)


async def test_seed_breakers_are_the_frameworks_and_unknown_services_get_a_fresh_one() -> None:
    """service_circuit_breakers holds framework CircuitBreakers with the seed's settings; a service
    without an entry is called through a new default breaker each time, which never opens."""
    breakers = circuit_breaker.create_service_breakers(FakeClock())
    assert {n: (b.failure_threshold, b.recovery_timeout) for n, b in breakers.items()} == {
        "payment_service": (3, 30),
        "inventory_service": (5, 60),
        "notification_service": (10, 120),
    }
    assert all(isinstance(b, CircuitBreaker) and b.state is CircuitState.CLOSED for b in breakers.values())

    circuit_breaker.services.reset()
    circuit_breaker.services.outage("search_service")
    outputs = [
        await circuit_breaker.circuit_breaker_protected_worker(
            {"service_name": "search_service", "request_data": {}}
        )
        for _ in range(7)
    ]
    assert [o["status"] for o in outputs] == ["service_call_failed"] * 7  # never circuit_breaker_open
    assert {o["failure_count"] for o in outputs} == {1}


async def test_engine_breaker_parks_steps_while_open_and_completes_after_recovery(
    breaker_outcome: dict[str, Any],
) -> None:
    """A failing payment service opens the step's breaker after three failed attempts; order A's next
    attempt and order B's first are parked without reaching the service, and both complete after the
    recovery timeout with attempt counts that parking did not raise."""
    engine = breaker_outcome["engine"]
    assert 3 <= engine["opened_after"] <= 3.5  # A's third attempt fails at 3 s; polled in 0.5 s steps
    a, b = engine["orders"]["A"], engine["orders"]["B"]
    assert (a["state"], b["state"]) == ("completed", "completed")
    assert (a["charge_while_open"], b["charge_while_open"]) == ("parked", "parked")
    assert a["breaker_while_open"] == b["breaker_while_open"] == "open"

    # A: 1 s then 2 s backoff, the breaker opens at 3 s, the 4 s wait ends in parking until 3 + 30 s.
    assert a["charge_history"] == [
        (1, "failed", 0.0),
        (2, "failed", 1.0),
        (3, "failed", 3.0),
        (4, "parked", 7.0),
        (4, "completed", 33.0),
    ]
    assert a["charge_attempts"] == 4
    # B never failed: every entry is its first attempt, parked until it could go.
    assert b["charge_attempts"] == 1
    assert {attempt for attempt, _, _ in b["charge_history"]} == {1}
    assert [status for _, status, _ in b["charge_history"]][-1] == "completed"
    assert {status for _, status, _ in b["charge_history"][:-1]} == {"parked"}
    assert b["charge_history"][-1][2] >= 33.0

    # Parked attempts never reached the service: three failures, then one success per order.
    calls = engine["service_calls"]
    assert [ok for _, ok in calls] == [False, False, False, True, True]
    assert [at for at, _ in calls][:3] == [0.0, 1.0, 3.0]
    assert engine["breaker_state"] == "closed"
    parked_entries = sum(s == "parked" for o in (a, b) for _, s, _ in o["charge_history"])
    assert engine["tracked_error_types"] == {"connection_error": 3, "circuit_open": parked_entries}


# ---- section 6: error tracking ------------------------------------------------------------------


@pytest.fixture
async def tracking_outcome(clock: FakeClock) -> dict[str, Any]:
    return await clock.run_until(error_tracking.main(clock=clock))


async def test_error_tracking_seed_worker_records_each_failure_once(tracking_outcome: dict[str, Any]) -> None:
    """The seed's worker records its three failures once each, by type, in the framework's ErrorTracker,
    and none is retried."""
    runs = tracking_outcome["runs"]["report_errors"]
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

    assert isinstance(error_tracking.error_tracker, ErrorTracker)
    summary = tracking_outcome["summary"]
    assert summary["total_errors"] == 3
    assert summary["recent_errors_1h"] == 3
    assert summary["error_counts_by_type"] == {
        "validation_error": 1,
        "connection_error": 1,
        "unexpected_error": 1,
    }
    assert summary["error_rates"]["connection_error"] == pytest.approx(100 / 3)
    assert dict(summary["top_error_patterns"]) == {
        "error_reporting_worker:validation_error": 1,
        "error_reporting_worker:connection_error": 1,
        "error_reporting_worker:unexpected_error": 1,
    }
    recorded = error_tracking.error_tracker.errors
    assert [(e["error_type"], e["severity"]) for e in recorded] == [
        ("validation_error", "medium"),
        ("connection_error", "high"),
        ("unexpected_error", "critical"),
    ]
    assert recorded[1]["retry_recommended"] is True


async def test_engine_tracker_records_every_failed_attempt(tracking_outcome: dict[str, Any]) -> None:
    """Without any code in the workers, the engine records one entry per failed attempt: what the seed's
    worker raised (the wrapped failures as permanent_error) and, for the plain worker, each of the three
    connection attempts, with the seed's error types and severities."""
    records = [
        (r["workflow_id"], r["attempt"], r["worker_name"], r["error_type"], r["severity"])
        for r in tracking_outcome["engine_records"]
    ]
    assert records == [
        ("report_errors", 1, "error_reporting_worker", "validation_error", "medium"),
        ("report_errors", 1, "error_reporting_worker", "permanent_error", "high"),
        ("report_errors", 1, "error_reporting_worker", "permanent_error", "high"),
        ("plain_risky", 1, "plain_risky_worker", "validation_error", "medium"),
        ("plain_risky", 1, "plain_risky_worker", "connection_error", "high"),
        ("plain_risky", 2, "plain_risky_worker", "connection_error", "high"),
        ("plain_risky", 3, "plain_risky_worker", "connection_error", "high"),
        ("plain_risky", 1, "plain_risky_worker", "unexpected_error", "critical"),
    ]
    assert tracking_outcome["runs"]["plain_risky"]["connection_fail"]["attempts"] == 3
    summary = tracking_outcome["engine_summary"]
    assert summary["total_errors"] == 8
    assert summary["error_counts_by_type"] == {
        "validation_error": 2,
        "permanent_error": 2,
        "connection_error": 3,
        "unexpected_error": 1,
    }
    assert summary["error_counts_by_severity"] == {"medium": 2, "high": 5, "critical": 1}
    assert summary["top_error_patterns"][0] == ("plain_risky_worker:connection_error", 3)


async def test_engine_tracker_summary_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    """The engine's records live in the SQLite file: a Runtime started afterwards on it reports the same
    summary, and can narrow it to one workflow."""
    store = f"sqlite:///{tmp_path / 'errors.db'}"
    outcome = await clock.run_until(error_tracking.main(store=store, clock=clock))
    async with Runtime(workflows=error_tracking.create_workflows(), store=store, clock=clock) as rt:
        assert rt.error_tracker.get_error_summary() == outcome["engine_summary"]
        plain = rt.error_tracker.get_error_summary(workflow_id="plain_risky")
        assert len(await rt.error_tracker.query()) == 8
    assert plain["total_errors"] == 5
    assert plain["error_counts_by_type"] == {
        "validation_error": 1,
        "connection_error": 3,
        "unexpected_error": 1,
    }


async def test_error_tracking_main_starts_from_an_empty_tracker(clock: FakeClock) -> None:
    """Running the example twice reports the same three errors, not six, in both trackers."""
    await clock.run_until(error_tracking.main(clock=clock))
    outcome = await clock.run_until(error_tracking.main(clock=clock))
    assert outcome["summary"]["total_errors"] == 3
    assert outcome["engine_summary"]["total_errors"] == 8
