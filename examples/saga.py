"""Section 5 of the error-handling patterns: an order saga whose completed steps are undone in reverse.

The workflow and the workers ``reserve_inventory``, ``release_inventory`` and ``charge_payment`` are the
seed's code, unchanged but for two things: ``datetime.utcnow()`` (deprecated since Python 3.12) became
``datetime.now(UTC)``, and the seed's stub functions talk to :data:`shop`, an in-memory stand-in for the
warehouse, the payment gateway and the carrier, with switches that make each failure happen on purpose.
``create_shipment``, ``cancel_shipment``, ``refund_payment`` and ``send_notification`` are named but not
written in the seed; they are written here in its style.

The seed's workers report business failures by returning a dict (``"status": "insufficient_inventory"``,
``"payment_declined"``). To the engine a returned dict is a success, so :func:`create_saga_workflow` (the
seed's definition, verbatim) would ship an order whose card was declined. :func:`create_checked_saga_workflow`
adds ``fail_if=`` to those steps: the dict becomes a business failure and the saga compensates.

Run it from the project root: ``python -m examples.saga`` (or ``python examples/saga.py``).
"""

# The seed's code is kept as written, so its typing.Dict annotations, `raise ... ` inside `except` without
# `from`, and `str(e)` inside f-strings stay.
# ruff: noqa: UP006, UP035, B904, RUF010

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any, Dict

from multiagents import Clock, RetryPolicy, Runtime, WorkflowBuilder, WorkflowDefinition, worker
from multiagents.core.exceptions import WorkerExecutionError

INITIAL_STOCK = {"product_1": 10, "product_2": 5, "product_3": 0}


class Shop:
    """The services behind the seed's stub functions, in memory, with switches for each failure.

    ``log`` lists every call the stubs receive, in order, as ``(operation, details)``: tests read it to
    see which compensations ran and what each one was given.
    """

    def __init__(self, seed: int = 0) -> None:
        self.reset(seed)

    def reset(self, seed: int = 0) -> None:
        self.stock: dict[str, int] = dict(INITIAL_STOCK)
        self.reservations: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.shipments: dict[str, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.rng = random.Random(seed)
        # Failure switches.
        self.shipment_failures = 0  # the next n create_shipment calls cannot reach the carrier
        self.warehouse_offline = False  # reservations cannot be read: release_inventory needs a person
        self.notification_fails = False  # send_notification gives up for good

    def record(self, operation: str, **details: Any) -> None:
        self.log.append((operation, details))

    def operations(self, *names: str) -> list[tuple[str, dict[str, Any]]]:
        return [(op, d) for op, d in self.log if not names or op in names]


shop = Shop()


# ---- the seed's workflow ------------------------------------------------------------------------


# Comprehensive saga pattern with compensation tracking
def create_saga_workflow():
    """Workflow implementing saga pattern with proper compensation ordering."""
    return (
        WorkflowBuilder("saga_workflow")
        .add_step("step1_reserve_inventory", "reserve_inventory", compensation="release_inventory")
        .add_step("step2_charge_payment", "charge_payment", compensation="refund_payment")
        .add_step("step3_create_shipment", "create_shipment", compensation="cancel_shipment")
        .add_step("step4_send_notification", "send_notification")
        # No compensation for notifications
        .build()
    )


def reservation_failed(output: dict[str, Any]) -> bool:
    """The seed's reserve_inventory returns a dict when stock is short; that is a business failure."""
    return output.get("status") != "reservation_successful"


def payment_failed(output: dict[str, Any]) -> bool:
    """Declined, invalid, timed out or gateway error: everything but a charge is a failed payment."""
    return output.get("status") != "payment_successful"


# Retries wait 0.2 s then 0.4 s, so a demo run with a real clock stays quick; no jitter, so tests can
# assert on the exact times.
SHIPMENT_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.2, backoff_coefficient=2.0, jitter=0)


def create_checked_saga_workflow() -> WorkflowDefinition:
    """The seed's saga with its returned business failures turned into failures that compensate."""
    return (
        WorkflowBuilder("checked_saga_workflow")
        .add_step(
            "step1_reserve_inventory",
            "reserve_inventory",
            compensation="release_inventory",
            fail_if=reservation_failed,
        )
        .add_step(
            "step2_charge_payment",
            "charge_payment",
            compensation="refund_payment",
            fail_if=payment_failed,
        )
        .add_step(
            "step3_create_shipment",
            "create_shipment",
            compensation="cancel_shipment",
            retry_policy=SHIPMENT_RETRY,
        )
        .add_step("step4_send_notification", "send_notification")
        .build()
    )


# ---- the seed's saga participants ---------------------------------------------------------------


# Saga participant with detailed state tracking
@worker("reserve_inventory")
async def reserve_inventory(context: Dict[str, Any]) -> Dict[str, Any]:
    """Reserve inventory with detailed tracking for compensation."""

    order_items = context["order_items"]
    order_id = context["order_id"]

    reservation_details = {
        "reservation_id": f"RES-{order_id}-{int(time.time())}",
        "order_id": order_id,
        "reserved_items": [],
        "reservation_timestamp": datetime.now(UTC).isoformat(),
    }

    try:
        for item in order_items:
            product_id = item["product_id"]
            quantity = item["quantity"]

            # Check availability
            available = get_inventory_count(product_id)
            if available < quantity:
                # Partial failure - release what we've reserved
                await release_partial_reservation(reservation_details["reserved_items"])

                return {
                    "status": "insufficient_inventory",
                    "error": f"Only {available} units of {product_id} available, need {quantity}",
                    "available_quantity": available,
                    "requested_quantity": quantity,
                    "product_id": product_id,
                }

            # Reserve the inventory
            reserve_inventory_item(product_id, quantity)
            reservation_details["reserved_items"].append(
                {"product_id": product_id, "quantity": quantity, "reserved_at": datetime.now(UTC).isoformat()}
            )

        # Store reservation for compensation
        store_reservation(reservation_details)

        return {
            "status": "reservation_successful",
            "reservation_id": reservation_details["reservation_id"],
            "reserved_items": reservation_details["reserved_items"],
            "total_items_reserved": len(reservation_details["reserved_items"]),
        }

    except Exception as e:
        # Clean up any partial reservations
        await release_partial_reservation(reservation_details["reserved_items"])
        raise WorkerExecutionError(f"Inventory reservation failed: {str(e)}")


@worker("release_inventory")
async def release_inventory(context: Dict[str, Any]) -> Dict[str, Any]:
    """Compensation: Release reserved inventory."""

    reservation_id = context.get("reservation_id")

    if not reservation_id:
        return {"compensation_status": "no_action_needed", "message": "No reservation ID provided"}

    try:
        # Get reservation details
        reservation = get_reservation(reservation_id)

        if not reservation:
            return {
                "compensation_status": "reservation_not_found",
                "reservation_id": reservation_id,
                "message": "Reservation not found, may have been already released",
            }

        # Release each reserved item
        released_items = []
        for item in reservation["reserved_items"]:
            try:
                release_inventory_item(item["product_id"], item["quantity"])
                released_items.append(item)
            except Exception as item_error:
                # Log but continue with other items
                print(f"Failed to release {item['product_id']}: {item_error}")

        # Remove reservation record
        remove_reservation(reservation_id)

        return {
            "compensation_status": "success",
            "reservation_id": reservation_id,
            "released_items": released_items,
            "compensation_timestamp": datetime.now(UTC).isoformat(),
        }

    except Exception as e:
        # Compensation failed - requires manual intervention
        return {
            "compensation_status": "failed",
            "error": str(e),
            "reservation_id": reservation_id,
            "requires_manual_intervention": True,
            "escalation_required": True,
        }


# Enhanced payment processing with detailed error categorization
@worker("charge_payment")
async def charge_payment(context: Dict[str, Any]) -> Dict[str, Any]:
    """Process payment with detailed error categorization."""

    payment_info = context["payment_info"]
    amount = context["amount"]
    order_id = context["order_id"]

    payment_attempt = {
        "payment_id": f"PAY-{order_id}-{int(time.time())}",
        "order_id": order_id,
        "amount": amount,
        "attempt_timestamp": datetime.now(UTC).isoformat(),
    }

    try:
        # Validate payment info
        validation_result = validate_payment_info(payment_info)
        if not validation_result["valid"]:
            return {
                "status": "payment_validation_failed",
                "error": validation_result["error"],
                "error_category": "validation",
                "retry_recommended": False,
            }

        # Process payment
        payment_result = await process_payment_transaction(payment_info, amount)

        if payment_result["status"] == "declined":
            return {
                "status": "payment_declined",
                "decline_reason": payment_result["decline_reason"],
                "error_category": "declined",
                "retry_recommended": payment_result["decline_reason"] in ["insufficient_funds"],
                "payment_id": payment_attempt["payment_id"],
            }

        # Payment successful
        payment_attempt["transaction_id"] = payment_result["transaction_id"]
        payment_attempt["status"] = "charged"
        store_payment_record(payment_attempt)

        return {
            "status": "payment_successful",
            "payment_id": payment_attempt["payment_id"],
            "transaction_id": payment_result["transaction_id"],
            "amount_charged": amount,
            "processing_fee": payment_result.get("processing_fee", 0),
        }

    except PaymentGatewayError as e:
        if e.error_type == "timeout":
            return {
                "status": "payment_timeout",
                "error": str(e),
                "error_category": "timeout",
                "retry_recommended": True,
                "payment_id": payment_attempt["payment_id"],
            }
        else:
            return {
                "status": "gateway_error",
                "error": str(e),
                "error_category": "gateway",
                "retry_recommended": e.retry_recommended,
                "payment_id": payment_attempt["payment_id"],
            }

    except Exception as e:
        raise WorkerExecutionError(f"Payment processing failed: {str(e)}")


class PaymentGatewayError(Exception):
    """Payment gateway specific error."""

    def __init__(self, message, error_type="unknown", retry_recommended=False):
        super().__init__(message)
        self.error_type = error_type
        self.retry_recommended = retry_recommended


# ---- the participants the seed names, written in its style -------------------------------------


@worker("refund_payment")
async def refund_payment(context: Dict[str, Any]) -> Dict[str, Any]:
    """Compensation: refund the charge that charge_payment made (its payment_id and transaction_id)."""
    payment_id = context.get("payment_id")
    transaction_id = context.get("transaction_id")
    shop.record("refund_payment", payment_id=payment_id, transaction_id=transaction_id)

    if not payment_id:
        return {"compensation_status": "no_action_needed", "message": "No payment ID provided"}

    payment = shop.payments.get(payment_id)
    if payment is None or payment["status"] == "refunded":
        return {
            "compensation_status": "payment_not_found",
            "payment_id": payment_id,
            "message": "Payment not found, may have been already refunded",
        }

    payment["status"] = "refunded"
    return {
        "compensation_status": "success",
        "payment_id": payment_id,
        "refund_id": f"REF-{transaction_id}",
        "amount_refunded": payment["amount"],
        "compensation_timestamp": datetime.now(UTC).isoformat(),
    }


@worker("create_shipment")
async def create_shipment(context: Dict[str, Any]) -> Dict[str, Any]:
    """Book a shipment for the reserved items. The carrier may be briefly unreachable: a
    ConnectionError is transient, so the engine retries the step per its policy."""
    order_id = context["order_id"]
    reservation_id = context["reservation_id"]
    shop.record("create_shipment", order_id=order_id, reservation_id=reservation_id)

    if shop.shipment_failures > 0:
        shop.shipment_failures -= 1
        raise ConnectionError("Carrier API unreachable")

    shipment_id = f"SHIP-{order_id}-{int(time.time())}"
    shop.shipments[shipment_id] = {
        "order_id": order_id,
        "reservation_id": reservation_id,
        "address": context.get("shipping_address"),
        "status": "created",
    }
    return {
        "status": "shipment_created",
        "shipment_id": shipment_id,
        "tracking_number": f"TRK{shop.rng.randint(10000000, 99999999)}",
        "created_at": datetime.now(UTC).isoformat(),
    }


@worker("cancel_shipment")
async def cancel_shipment(context: Dict[str, Any]) -> Dict[str, Any]:
    """Compensation: cancel the shipment create_shipment booked."""
    shipment_id = context.get("shipment_id")
    shop.record("cancel_shipment", shipment_id=shipment_id)

    if not shipment_id:
        return {"compensation_status": "no_action_needed", "message": "No shipment ID provided"}

    shipment = shop.shipments.get(shipment_id)
    if shipment is None:
        return {"compensation_status": "shipment_not_found", "shipment_id": shipment_id}

    shipment["status"] = "cancelled"
    return {
        "compensation_status": "success",
        "shipment_id": shipment_id,
        "compensation_timestamp": datetime.now(UTC).isoformat(),
    }


@worker("send_notification")
async def send_notification(context: Dict[str, Any]) -> Dict[str, Any]:
    """Tell the customer the order is on its way. Nothing undoes a sent message, so no compensation."""
    order_id = context["order_id"]
    shop.record("send_notification", order_id=order_id, shipment_id=context.get("shipment_id"))

    if shop.notification_fails:
        raise WorkerExecutionError(f"Notification service rejected the message for order {order_id}")

    message = {
        "to": context.get("customer_email"),
        "order_id": order_id,
        "tracking_number": context.get("tracking_number"),
    }
    shop.notifications.append(message)
    return {"status": "notification_sent", "notified": message["to"]}


WORKERS = [
    reserve_inventory,
    release_inventory,
    charge_payment,
    refund_payment,
    create_shipment,
    cancel_shipment,
    send_notification,
]


# ---- the seed's stub functions, backed by the shop ----------------------------------------------


def validate_payment_info(payment_info):
    """Validate payment information."""
    if not payment_info.get("card_number"):
        return {"valid": False, "error": "Card number required"}
    return {"valid": True}


async def process_payment_transaction(payment_info, amount):
    """Simulate payment processing."""
    # Simulate various outcomes
    if amount > 10000:
        return {"status": "declined", "decline_reason": "amount_too_large"}

    return {
        "status": "approved",
        "transaction_id": f"TXN-{shop.rng.randint(100000, 999999)}",
        "processing_fee": amount * 0.029,
    }


def get_inventory_count(product_id):
    """Get current inventory count."""
    return shop.stock.get(product_id, 0)


def reserve_inventory_item(product_id, quantity):
    """Reserve inventory item."""
    shop.record("reserve_inventory_item", product_id=product_id, quantity=quantity)
    shop.stock[product_id] -= quantity


def store_reservation(reservation_details):
    """Store reservation details."""
    shop.reservations[reservation_details["reservation_id"]] = reservation_details


def get_reservation(reservation_id):
    """Get reservation by ID."""
    shop.record("get_reservation", reservation_id=reservation_id)
    if shop.warehouse_offline:
        raise ConnectionError("Warehouse system offline")
    return shop.reservations.get(reservation_id)


def remove_reservation(reservation_id):
    """Remove reservation record."""
    shop.reservations.pop(reservation_id, None)


def release_inventory_item(product_id, quantity):
    """Release reserved inventory."""
    shop.record("release_inventory_item", product_id=product_id, quantity=quantity)
    shop.stock[product_id] = shop.stock.get(product_id, 0) + quantity


async def release_partial_reservation(reserved_items):
    """Release partially reserved items."""
    for item in reserved_items:
        release_inventory_item(item["product_id"], item["quantity"])


def store_payment_record(payment_attempt):
    """Store payment record."""
    shop.payments[payment_attempt["payment_id"]] = dict(payment_attempt)


# ---- running it ---------------------------------------------------------------------------------


def order(order_id: str, items: dict[str, int], amount: float = 120.0, **extra: Any) -> dict[str, Any]:
    """A workflow input for ``items`` ({product_id: quantity})."""
    return {
        "order_id": order_id,
        "order_items": [{"product_id": p, "quantity": q} for p, q in items.items()],
        "amount": amount,
        "payment_info": {"card_number": "4242424242424242"},
        "customer_email": "ada@example.com",
        "shipping_address": {"city": "London"},
        **extra,
    }


def summarise(status: dict[str, Any]) -> dict[str, Any]:
    """The parts of a status people look at: state, step labels, who ran, what was undone, why."""
    history = status["execution_history"]
    return {
        "transaction_id": status["transaction_id"],
        "state": status["state"].value,
        "steps": {name: step["status"] for name, step in status["steps"].items()},
        "attempts": {name: step["attempts"] for name, step in status["steps"].items()},
        "ran": [e["worker"] for e in history if e["kind"] == "execute" and e.get("worker")],
        "compensations": [
            e["worker"]
            for e in history
            if e["kind"] == "compensate" and e["status"] in ("compensated", "failed")
        ],
        "failed_compensations": [
            e["worker"] for e in history if e["kind"] == "compensate" and e["status"] == "failed"
        ],
        "error": (status["error"] or {}).get("message"),
        "compensation_failures": status["compensation_failures"],
    }


async def run_order(rt: Runtime, workflow_id: str, context: dict[str, Any]) -> dict[str, Any]:
    return summarise(await rt.run(workflow_id, context))


async def main(
    store: str = "memory://", clock: Clock | None = None, rng: random.Random | None = None
) -> dict[str, dict[str, Any]]:
    """Run every branch of the checked saga once; returns each scenario's summary by name."""
    shop.reset()
    wf = create_checked_saga_workflow()
    outcomes: dict[str, dict[str, Any]] = {}
    async with Runtime(workers=WORKERS, workflows=[wf], store=store, clock=clock, rng=rng) as rt:
        outcomes["happy_path"] = await run_order(rt, wf.id, order("A1", {"product_1": 2, "product_2": 1}))
        outcomes["insufficient_inventory"] = await run_order(
            rt, wf.id, order("A2", {"product_1": 1, "product_3": 1})
        )
        outcomes["payment_declined"] = await run_order(rt, wf.id, order("A3", {"product_1": 1}, 20000))

        shop.shipment_failures = 1
        outcomes["flaky_shipment"] = await run_order(rt, wf.id, order("A4", {"product_2": 1}))

        shop.shipment_failures = 99
        outcomes["shipment_down"] = await run_order(rt, wf.id, order("A5", {"product_1": 1}))
        shop.shipment_failures = 0

        shop.notification_fails = True
        outcomes["notification_fails"] = await run_order(rt, wf.id, order("A6", {"product_1": 1}))
        shop.notification_fails = False

        # The warehouse is down while the saga rolls back: release_inventory reports that a person
        # must step in. Once the warehouse is back, retrying the compensations finishes the job.
        shop.warehouse_offline = True
        shop.shipment_failures = 99
        stuck = await run_order(rt, wf.id, order("A7", {"product_2": 2}))
        outcomes["manual_intervention"] = stuck
        shop.warehouse_offline = False
        shop.shipment_failures = 0
        await rt.retry_compensations(stuck["transaction_id"])
        outcomes["manual_intervention_retried"] = summarise(await rt.wait(stuck["transaction_id"]))
    return outcomes


def print_summary(outcomes: dict[str, dict[str, Any]]) -> None:
    for name, o in outcomes.items():
        print(f"{name}: {o['state']}")
        print(f"    ran:           {', '.join(o['ran'])}")
        if o["compensations"]:
            print(f"    compensations: {', '.join(o['compensations'])}")
        if o["error"]:
            print(f"    error:         {o['error']}")
        for failure in o["compensation_failures"]:
            print(f"    needs a person: {failure['step']}: {failure['error']}")
    print(f"stock left: {shop.stock}")


if __name__ == "__main__":
    print_summary(asyncio.run(main()))
