"""Section 4 of the error-handling patterns: a circuit breaker in front of a service that goes down.

The seed writes its own ``CircuitState``, ``CircuitBreaker`` and ``CircuitBreakerOpenError``; here they
are the framework's (``from multiagents import CircuitBreaker, CircuitState`` and
``from multiagents.core.exceptions import CircuitBreakerOpenError``), which take the seed's arguments
(``failure_threshold``, ``recovery_timeout``, ``expected_exception``; no name needed) and offer its
``call(fn, *args)``, ``state.value``, ``failure_count`` and ``recovery_timeout``. The seed's
``service_circuit_breakers`` and ``circuit_breaker_protected_worker`` are kept as written, with these
changes:

- Each breaker is given ``clock=``, so that time can be simulated; the dict is built by
  :func:`create_service_breakers` so that :func:`main` can start from fresh breakers on its clock.
- ``call_external_service`` is not section 3's function with its random failures but a stand-in whose
  services are up or down on purpose (:data:`services`), so that the breaker opens when the story says.
- In the seed, a service without an entry gets ``CircuitBreaker()``, a new one on every call, which
  therefore never opens; that stays as it is.

The seed's worker guards one call inside one attempt of one step, and reports an open breaker by
returning a dict. The framework can also guard the step itself: ``add_step(...,
circuit_breaker="payment_service")`` with ``Runtime(breakers=[CircuitBreaker("payment_service", ...)])``.
Then every attempt of that step, in every workflow, counts for the breaker, and while it is open the
engine does not send the step at all: the step is *parked* until the breaker half-opens, and parking
spends none of the step's retry attempts. :func:`run_guarded_checkout` shows it.

Time here is simulated: :func:`main` runs on a ``FakeClock``, so the 30 s recovery takes no real time.

Run it from the project root: ``python -m examples.circuit_breaker`` (or
``python examples/circuit_breaker.py``).
"""

# The seed's code is kept as written: typing.Dict annotations stay.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Dict

from multiagents import (
    CircuitBreaker,
    CircuitState,
    Clock,
    FakeClock,
    RetryPolicy,
    Runtime,
    SystemClock,
    WorkflowBuilder,
    WorkflowDefinition,
    worker,
)
from multiagents.core.exceptions import CircuitBreakerOpenError

LATENCY = 0.1  # seconds a call to a service that is up takes


class Services:
    """The remote services behind ``call_external_service``: each is up unless an outage says otherwise.

    ``calls`` lists every call that reached a service, as ``(service, time, succeeded)``: what the
    breakers let through.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.down_until: dict[str, float] = {}
        self.calls: list[tuple[str, float, bool]] = []

    def outage(self, service_name: str, seconds: float = math.inf) -> None:
        """Take the service down from now, for ``seconds`` (until :meth:`restore` by default)."""
        self.down_until[service_name] = self.clock.now() + seconds

    def restore(self, service_name: str) -> None:
        self.down_until.pop(service_name, None)

    def is_down(self, service_name: str) -> bool:
        return self.clock.now() < self.down_until.get(service_name, -math.inf)

    def calls_to(self, service_name: str) -> int:
        return sum(1 for name, _, _ in self.calls if name == service_name)


services = Services()


async def call_external_service(service_name: str, request_data: Dict[str, Any]) -> Dict[str, Any]:
    """Stand-in for section 3's call: a ``ConnectionError`` while the service is down."""
    down = services.is_down(service_name)
    services.calls.append((service_name, services.clock.now(), not down))
    if down:
        raise ConnectionError(f"Failed to connect to {service_name}")
    await services.clock.sleep(LATENCY)
    return {"result": f"Success from {service_name}", "data": request_data}


# ---- the seed's code ----------------------------------------------------------------------------


def create_service_breakers(clock: Clock | None = None) -> Dict[str, CircuitBreaker]:
    # Global circuit breakers for different services
    return {
        "payment_service": CircuitBreaker(failure_threshold=3, recovery_timeout=30, clock=clock),
        "inventory_service": CircuitBreaker(failure_threshold=5, recovery_timeout=60, clock=clock),
        "notification_service": CircuitBreaker(failure_threshold=10, recovery_timeout=120, clock=clock),
    }


service_circuit_breakers = create_service_breakers()


@worker("circuit_breaker_protected_worker")
async def circuit_breaker_protected_worker(context: Dict[str, Any]) -> Dict[str, Any]:
    """Worker with circuit breaker protection for external calls."""

    service_name = context["service_name"]
    request_data = context["request_data"]

    # Get circuit breaker for this service
    circuit_breaker = service_circuit_breakers.get(
        service_name,
        CircuitBreaker(),  # Default circuit breaker
    )

    try:
        # Make protected call
        response = await circuit_breaker.call(call_external_service, service_name, request_data)

        return {
            "response": response,
            "service_name": service_name,
            "circuit_breaker_state": circuit_breaker.state.value,
            "status": "success",
        }

    except CircuitBreakerOpenError:
        return {
            "status": "circuit_breaker_open",
            "error": f"Circuit breaker for {service_name} is OPEN",
            "service_name": service_name,
            "retry_after": circuit_breaker.recovery_timeout,
            "alternative_action": "use_cached_data_or_fallback",
        }

    except Exception as e:
        return {
            "status": "service_call_failed",
            "error": str(e),
            "service_name": service_name,
            "circuit_breaker_state": circuit_breaker.state.value,
            "failure_count": circuit_breaker.failure_count,
        }


# ---- the seed's worker on the framework ---------------------------------------------------------


def create_protected_call_workflow() -> WorkflowDefinition:
    return WorkflowBuilder("protected_call").add_step("call", circuit_breaker_protected_worker).build()


async def protected_calls(
    rt: Runtime, clock: FakeClock, service_name: str, n: int = 1
) -> list[dict[str, Any]]:
    """``n`` runs of the seed's worker at once; each one's dict, with when it ran and the service's
    call count after it."""
    started = clock.now()
    context = {"service_name": service_name, "request_data": {}}
    statuses = await clock.run_until(asyncio.gather(*(rt.run("protected_call", context) for _ in range(n))))
    outputs = []
    for status in statuses:
        output = dict(status["step_results"]["call"])
        output.pop("response", None)
        outputs.append({**output, "at": started, "service_calls": services.calls_to(service_name)})
    return outputs


async def run_seed_worker(rt: Runtime, clock: FakeClock) -> dict[str, Any]:
    """payment_service goes down: three failures open its breaker, which refuses calls for 30 s; the
    service comes back, and after the 30 s one probe goes through (a second call at the same moment is
    refused) and its success closes the breaker."""
    breaker = service_circuit_breakers["payment_service"]
    services.outage("payment_service")
    failing = [(await protected_calls(rt, clock, "payment_service"))[0] for _ in range(3)]
    opened_at = clock.now()
    [refused] = await protected_calls(rt, clock, "payment_service")
    services.restore("payment_service")
    await clock.advance(breaker.recovery_timeout - 1)
    [still_refused] = await protected_calls(rt, clock, "payment_service")
    await clock.advance(1)
    probe, beside_probe = sorted(
        await protected_calls(rt, clock, "payment_service", 2), key=lambda o: o["status"] != "success"
    )
    [after] = await protected_calls(rt, clock, "payment_service")
    return {
        "failing": failing,
        "opened_at": opened_at,
        "refused": refused,
        "still_refused": still_refused,
        "probe": probe,
        "beside_probe": beside_probe,
        "after": after,
        "final_state": breaker.state.value,
        "final_failure_count": breaker.failure_count,
    }


# ---- the engine guarding a step -----------------------------------------------------------------

PAYMENT_OUTAGE = 20.0  # seconds the payment service stays down in run_guarded_checkout


@worker("reserve_stock")
async def reserve_stock(context: Dict[str, Any]) -> Dict[str, Any]:
    return {"reservation_id": f"R-{context['order_id']}"}


@worker("release_stock")
async def release_stock(context: Dict[str, Any]) -> Dict[str, Any]:
    return {"compensation_status": "success"}


@worker("charge_card")
async def charge_card(context: Dict[str, Any]) -> Dict[str, Any]:
    """Charge through the payment service; its ConnectionError is transient, so the engine retries."""
    response = await call_external_service("payment_service", {"order_id": context["order_id"]})
    return {"charged": True, "payment_result": response["result"]}


@worker("confirm_order")
async def confirm_order(context: Dict[str, Any]) -> Dict[str, Any]:
    return {"confirmed": True}


CHARGE_POLICY = RetryPolicy(max_attempts=5, initial_interval=1, backoff_coefficient=2, jitter=0)


def create_guarded_checkout_workflow() -> WorkflowDefinition:
    return (
        WorkflowBuilder("guarded_checkout")
        .add_step("reserve", reserve_stock, compensation=release_stock)
        .add_step("charge", charge_card, retry_policy=CHARGE_POLICY, circuit_breaker="payment_service")
        .add_step("confirm", confirm_order)
        .build()
    )


def create_payment_breaker() -> CircuitBreaker:
    """The engine's breaker: named, so that steps can refer to it; the Runtime gives it its clock."""
    return CircuitBreaker("payment_service", failure_threshold=3, recovery_timeout=30)


def charge_history(status: dict[str, Any], t0: float) -> list[tuple[int, str, float]]:
    """The charge step's attempts as (attempt, outcome, seconds after t0 it started)."""
    return [
        (e["attempt"], e["status"], round(e["started_at"] - t0, 3))
        for e in status["execution_history"]
        if e["step"] == "charge" and e["kind"] == "execute"
    ]


def order_id(name: str) -> str:
    """A fresh transaction id that sorts by ``name``: steps due at the same moment are then sent in that
    order, so which one takes the half-open probe does not depend on random ids."""
    return f"order-{name}-{uuid.uuid4().hex[:12]}"


async def poll_until(clock: FakeClock, condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait, in half-second steps of the clock, until ``condition()`` holds."""
    while not await condition():
        await clock.sleep(0.5)


async def run_guarded_checkout(store: str, clock: FakeClock) -> dict[str, Any]:
    """Order A meets a payment service that is down for 20 s: its first three attempts fail and open the
    breaker. Order B, started then, is parked without calling the service, and so is A's next attempt.
    Both complete once the breaker lets calls through again, with no attempt spent while parked."""
    wf = create_guarded_checkout_workflow()
    breaker = create_payment_breaker()
    workers = [reserve_stock, release_stock, charge_card, confirm_order]
    async with Runtime(workers=workers, workflows=[wf], store=store, clock=clock, breakers=[breaker]) as rt:
        t0 = clock.now()
        services.outage("payment_service", PAYMENT_OUTAGE)
        order_a = await rt.execute_workflow(wf.id, {"order_id": "A"}, transaction_id=order_id("A"))

        async def breaker_open() -> bool:
            return breaker.state is CircuitState.OPEN

        await clock.run_until(poll_until(clock, breaker_open))
        opened_after = clock.now() - t0
        order_b = await rt.execute_workflow(wf.id, {"order_id": "B"}, transaction_id=order_id("B"))

        async def both_parked() -> bool:
            statuses = [await rt.get_status(tid) for tid in (order_a, order_b)]
            return all(s["steps"]["charge"]["status"] == "parked" for s in statuses)

        await clock.run_until(poll_until(clock, both_parked))
        while_open = {tid: await rt.get_status(tid) for tid in (order_a, order_b)}
        final = await clock.run_until(asyncio.gather(rt.wait(order_a), rt.wait(order_b)))
        tracked = rt.error_tracker.get_error_summary(step="charge")

    def summary(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        return {
            "state": after["state"].value,
            "charge_while_open": before["steps"]["charge"]["status"],
            "breaker_while_open": before["breakers"]["payment_service"]["state"].value,
            "charge_attempts": after["steps"]["charge"]["attempts"],
            "charge_history": charge_history(after, t0),
            "finished_after": round(after["updated_at"] - t0, 3),
        }

    return {
        "opened_after": round(opened_after, 3),
        "orders": {
            name: summary(while_open[tid], status)
            for name, tid, status in (("A", order_a, final[0]), ("B", order_b, final[1]))
        },
        "service_calls": [
            (round(at - t0, 3), ok) for name, at, ok in services.calls if name == "payment_service"
        ],
        "breaker_state": breaker.state.value,
        "tracked_error_types": tracked["error_counts_by_type"],
    }


# ---- running it ---------------------------------------------------------------------------------


async def main(store: str = "memory://", clock: FakeClock | None = None) -> dict[str, Any]:
    """Run the seed's worker through an outage, then the engine-guarded checkout; returns both stories."""
    clock = clock if clock is not None else FakeClock()
    services.reset(clock)
    service_circuit_breakers.clear()
    service_circuit_breakers.update(create_service_breakers(clock))
    wf = create_protected_call_workflow()
    async with Runtime(
        workers=[circuit_breaker_protected_worker], workflows=[wf], store=store, clock=clock
    ) as rt:
        seed_worker = await run_seed_worker(rt, clock)
    services.reset(clock)
    engine = await run_guarded_checkout(store, clock)
    return {"seed_worker": seed_worker, "engine": engine}


def print_summary(outcome: dict[str, Any]) -> None:
    story = outcome["seed_worker"]
    t0 = story["failing"][0]["at"]
    print("the seed's worker, payment_service down:")
    calls = [
        *story["failing"],
        story["refused"],
        story["still_refused"],
        story["probe"],
        story["beside_probe"],
        story["after"],
    ]
    for call in calls:
        state = call.get("circuit_breaker_state")
        shown = f"breaker {state}" if state else "refused, not called"
        print(
            f"  t={call['at'] - t0:5.1f}s  {call['status']:<21} {shown:<20} service calls: {call['service_calls']}"
        )
    print(f"  breaker after the probe: {story['final_state']}")
    engine = outcome["engine"]
    print("the engine guarding the charge step, payment_service down for 20 s:")
    print(f"  the breaker opened at t={engine['opened_after']:g}s; order B started then")
    for name, order in engine["orders"].items():
        print(
            f"  order {name}: {order['state']} after {order['finished_after']:g}s, "
            f"{order['charge_attempts']} charge attempt(s); while the breaker was open its charge was "
            f"{order['charge_while_open']}"
        )
        for attempt, status, at in order["charge_history"]:
            print(f"      attempt {attempt} at t={at:g}s: {status}")
    print(f"  calls that reached the service: {engine['service_calls']}")
    print(f"  errors the engine tracked for the step: {engine['tracked_error_types']}")


if __name__ == "__main__":
    print_summary(asyncio.run(main()))
