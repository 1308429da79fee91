"""The demo: a batch of orders through the seed's order saga, with the failures real services have.

The saga is the one in the error-handling patterns: reserve inventory, charge the payment, create
the shipment, send the notification; undone by releasing, refunding and cancelling. The services
misbehave the way real ones do: stock runs out (nothing to undo: ``failed``), cards are declined
(the reservation is released: ``compensated``), the carrier's API drops connections (retried, and
compensated when it stays down), and now and then a refund needs a person (``compensation_failed``).

Each order's fate is drawn up front from ``random.Random(seed)``, so a seed gives the same outcomes
however the attempts interleave; only the simulated latency varies from run to run.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multiagents.policy import RetryPolicy
from multiagents.runtime import Runtime
from multiagents.worker import Worker, step_info, worker
from multiagents.workflow import WorkflowBuilder, WorkflowDefinition

__all__ = ["WORKFLOW_ID", "DemoReport", "Fate", "Shop", "build", "draw_orders", "reason", "run_demo"]

WORKFLOW_ID = "order_saga"
# Small intervals so that a batch with retries finishes in seconds; real services would wait longer.
FAST_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=0.05)
PRODUCTS = {"SKU-LAMP": 24.0, "SKU-MUG": 9.5, "SKU-DESK": 189.0, "SKU-PEN": 2.25, "SKU-RUG": 74.0}


@dataclass(frozen=True, slots=True)
class Fate:
    """What the services will do with one order (the default: everything works)."""

    out_of_stock: bool = False
    declined: bool = False
    shipping_failures: int = 0  # how many attempts in a row find the carrier unreachable
    refund_stuck: bool = False


class Shop:
    """The services behind the demo's workers; unknown orders get the default fate."""

    def __init__(self, fates: Mapping[str, Fate] | None = None, *, latency: float = 0.004, seed: int = 0):
        self.fates = dict(fates or {})
        self.latency = latency
        self._rng = random.Random(seed)

    def fate(self, order_id: str) -> Fate:
        return self.fates.get(order_id, Fate())

    async def call(self) -> None:
        """A service round trip."""
        await asyncio.sleep(self._rng.uniform(0, self.latency))


def draw_orders(count: int, seed: int, failure_rate: float) -> tuple[list[dict[str, Any]], dict[str, Fate]]:
    """``count`` order inputs and their fates; ``failure_rate`` scales how often each service fails."""
    rng = random.Random(seed)
    shipping_down = min(1.0, 4 * failure_rate)
    orders: list[dict[str, Any]] = []
    fates: dict[str, Fate] = {}
    for i in range(1, count + 1):
        order_id = f"ORD-{i:05d}"
        picks = [(rng.choice(sorted(PRODUCTS)), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]
        items = [{"product_id": p, "quantity": q} for p, q in picks]
        amount = round(sum(PRODUCTS[p] * q for p, q in picks), 2)
        orders.append(
            {
                "order_id": order_id,
                "order_items": items,
                "amount": amount,
                "payment_info": {"card_number": f"4242{rng.randint(0, 9999):04d}"},
            }
        )
        out_of_stock, declined = rng.random() < failure_rate, rng.random() < failure_rate
        down = [rng.random() < shipping_down for _ in range(FAST_RETRY.max_attempts)]
        failures = next((k for k, d in enumerate(down) if not d), len(down))
        stuck = rng.random() < min(1.0, 3 * failure_rate)
        fates[order_id] = Fate(out_of_stock, declined, failures, stuck)
    return orders, fates


def build(shop: Shop) -> tuple[list[Worker], WorkflowDefinition]:
    """The demo's workers, calling ``shop``, and the saga that runs them."""

    @worker("reserve_inventory")
    async def reserve_inventory(context: dict[str, Any]) -> dict[str, Any]:
        await shop.call()
        order_id, items = context["order_id"], context["order_items"]
        if shop.fate(order_id).out_of_stock:
            short = items[-1]
            return {
                "status": "insufficient_inventory",
                "error": f"insufficient inventory: {short['quantity']} x {short['product_id']} wanted, "
                f"{short['quantity'] - 1} in stock",
                "product_id": short["product_id"],
            }
        return {
            "status": "reservation_successful",
            "reservation_id": f"RES-{order_id}",
            "reserved_items": items,
        }

    @worker("release_inventory")
    async def release_inventory(context: dict[str, Any]) -> dict[str, Any]:
        await shop.call()
        return {"compensation_status": "success", "released": context["reservation_id"]}

    @worker("charge_payment")
    async def charge_payment(context: dict[str, Any]) -> dict[str, Any]:
        await shop.call()
        order_id = context["order_id"]
        if shop.fate(order_id).declined:
            return {
                "status": "payment_declined",
                "decline_reason": "insufficient_funds",
                "error": f"payment declined: the card ending {context['payment_info']['card_number'][-4:]} "
                "has insufficient funds",
            }
        return {
            "status": "payment_successful",
            "payment_id": f"PAY-{order_id}",
            "amount_charged": context["amount"],
        }

    @worker("refund_payment")
    async def refund_payment(context: dict[str, Any]) -> dict[str, Any]:
        await shop.call()
        if shop.fate(context["order_id"]).refund_stuck:
            return {
                "compensation_status": "failed",
                "requires_manual_intervention": True,
                "error": "refund needs manual intervention: the processor holds the refund of "
                f"{context['payment_id']} for review",
            }
        return {"compensation_status": "success", "refunded": context["payment_id"]}

    @worker("create_shipment")
    async def create_shipment(context: dict[str, Any]) -> dict[str, Any]:
        await shop.call()
        order_id = context["order_id"]
        if step_info().attempt <= shop.fate(order_id).shipping_failures:
            raise ConnectionError("shipping service unreachable: connection reset by the carrier's API")
        return {"shipment_id": f"SHP-{order_id}", "carrier": "ACME Freight"}

    @worker("cancel_shipment")
    async def cancel_shipment(context: dict[str, Any]) -> dict[str, Any]:
        await shop.call()
        return {"compensation_status": "success", "cancelled": context["shipment_id"]}

    @worker("send_notification")
    async def send_notification(context: dict[str, Any]) -> dict[str, Any]:
        await shop.call()
        return {"notified": f"customer of {context['order_id']}"}

    options: dict[str, Any] = {
        "timeout": 10,
        "retry_policy": FAST_RETRY,
        "compensation_retry_policy": FAST_RETRY,
    }
    workflow = (
        WorkflowBuilder(WORKFLOW_ID)
        .add_step(
            "reserve_inventory",
            reserve_inventory,
            compensation=release_inventory,
            fail_if=lambda out: out.get("status") == "insufficient_inventory",
            **options,
        )
        .add_step(
            "charge_payment",
            charge_payment,
            compensation=refund_payment,
            fail_if=lambda out: out.get("status") == "payment_declined",
            **options,
        )
        .add_step("create_shipment", create_shipment, compensation=cancel_shipment, **options)
        .add_step("send_notification", send_notification, **options)
        .build()
    )
    workers = [
        reserve_inventory,
        release_inventory,
        charge_payment,
        refund_payment,
        create_shipment,
        cancel_shipment,
        send_notification,
    ]
    return workers, workflow


_PREFIX = re.compile(r"^(step '[^']*' failed|compensation of step '[^']*' needs manual intervention): ")


def _kind(message: str) -> str:
    """The part of a demo error message before its details: "payment declined", ...."""
    return _PREFIX.sub("", message or "").split(":", 1)[0].strip() or "unknown error"


def reason(status: Mapping[str, Any]) -> str:
    """Why a finished workflow ended as it did, in a few words that group alike failures."""
    if status["state"] == "completed":
        return "every step completed"
    failures = status.get("compensation_failures") or []
    if failures:
        return "; ".join(sorted({_kind(f.get("error") or "") for f in failures}))
    error = status.get("error") or {}
    text = _kind(error.get("message", ""))
    if error.get("category") in ("transient", "timeout") and error.get("attempt"):
        text += f" after {error['attempt']} attempts"
    return text


def steps_run(status: Mapping[str, Any]) -> int:
    """Worker attempts (executions and compensations) recorded in a workflow's history."""
    return sum(
        1
        for e in status["execution_history"]
        if e.get("kind") in ("execute", "compensate") and e.get("attempt_id") and e.get("status") != "ignored"
    )


@dataclass(slots=True)
class DemoReport:
    store: str
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (state, reason) -> orders
    examples: dict[tuple[str, str], str] = field(default_factory=dict)  # (state, reason) -> a transaction id
    recovered: int = 0  # completed orders that needed a retry on the way
    steps: int = 0
    elapsed: float = 0.0

    @property
    def orders(self) -> int:
        return sum(self.outcomes.values())

    def count(self, state: str) -> int:
        return sum(n for (s, _), n in self.outcomes.items() if s == state)


async def run_demo(
    orders: int,
    seed: int,
    store: str,
    failure_rate: float,
    on_done: Callable[[], None] | None = None,
) -> DemoReport:
    """Run ``orders`` orders through the saga on ``store``; ``on_done`` is called as each one ends."""
    inputs, fates = draw_orders(orders, seed, failure_rate)
    workers, workflow = build(Shop(fates, seed=seed))
    report = DemoReport(store)
    started = time.perf_counter()
    async with Runtime(workers=workers, workflows=[workflow], store=store, rng=random.Random(seed)) as rt:
        tids = await asyncio.gather(*(rt.execute_workflow(WORKFLOW_ID, order) for order in inputs))

        async def finish(tid: str) -> dict[str, Any]:
            status = await rt.wait(tid)
            if on_done is not None:
                on_done()
            return status

        statuses = await asyncio.gather(*(finish(tid) for tid in tids))
    report.elapsed = time.perf_counter() - started
    for tid, status in zip(tids, statuses, strict=True):
        state, why = str(status["state"]), reason(status)
        report.outcomes[(state, why)] += 1
        report.examples.setdefault((state, why), tid)
        if state == "completed" and any(s["attempts"] > 1 for s in status["steps"].values()):
            report.recovered += 1
        report.steps += steps_run(status)
    return report
