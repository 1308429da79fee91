"""Section 2 of the error-handling patterns: allocating several resources, some of which may fail.

``resource_allocator``, ``cleanup_partial_allocations``, ``ResourceUnavailableError``,
``QuotaExceededError`` and ``release_resources`` are the seed's code, unchanged but for
``datetime.utcnow()`` (deprecated since Python 3.12), which became ``datetime.now(UTC)``. The allocate
and release functions the seed leaves undefined talk to :data:`datacenter`, an in-memory pool with a
capacity and a per-request quota for each resource type.

The allocator returns a dict for partial success and for total failure. ``fail_if`` on the step turns
``"allocation_failed"`` into a failure; a partial allocation goes on, with a warning, as the seed intends.
When a later step fails, ``release_resources`` compensates. It reports a resource it could not free
inside ``failed_releases`` (``requires_manual_intervention: True`` per resource) while returning
``"status": "release_completed"``; the engine reads that nested flag too, so the workflow ends
``compensation_failed`` and the leak is flagged for a person rather than hidden in an output.

Run it from the project root: ``python -m examples.resources`` (or ``python examples/resources.py``).
"""

# The seed's code is kept as written: typing.Dict annotations, `raise ...` inside `except` without `from`,
# and `str(e)` inside f-strings stay.
# ruff: noqa: UP006, UP035, B904, RUF010

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any, Dict

from multiagents import Runtime, WorkflowBuilder, WorkflowDefinition, worker
from multiagents.core.exceptions import WorkerExecutionError

# type: (capacity of the pool, the most one request may take)
LIMITS = {"compute": (32, 16), "storage": (1000, 500), "network": (4, 8)}


class Datacenter:
    """The pool behind the seed's allocate/release functions, with a switch for stuck releases."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.free = {kind: capacity for kind, (capacity, _) in LIMITS.items()}
        self.allocated: dict[str, tuple[str, int]] = {}  # resource id -> (type, amount)
        self.stuck_types: set[str] = set()  # releasing these raises: the hypervisor does not answer
        self.log: list[tuple[str, str]] = []  # ("allocate" | "release", resource id)
        self._ids = itertools.count(1)

    def allocate(self, kind: str, amount: int) -> str:
        _, quota = LIMITS[kind]
        if amount > quota:
            raise QuotaExceededError(f"{kind} request of {amount} exceeds the quota of {quota}")
        if amount > self.free[kind]:
            raise ResourceUnavailableError(f"only {self.free[kind]} {kind} free, {amount} requested")
        resource_id = f"{kind}-{next(self._ids)}"
        self.free[kind] -= amount
        self.allocated[resource_id] = (kind, amount)
        self.log.append(("allocate", resource_id))
        return resource_id

    def release(self, resource_id: str) -> None:
        kind, amount = self.allocated[resource_id]
        if kind in self.stuck_types:
            raise TimeoutError(f"hypervisor did not confirm the release of {resource_id}")
        del self.allocated[resource_id]
        self.free[kind] += amount
        self.log.append(("release", resource_id))


datacenter = Datacenter()


def allocate_compute_resource(amount):
    return datacenter.allocate("compute", amount)


def allocate_storage_resource(amount):
    return datacenter.allocate("storage", amount)


def allocate_network_resource(amount):
    return datacenter.allocate("network", amount)


def release_resource(resource_id):
    datacenter.release(resource_id)


# ---- the seed's code ----------------------------------------------------------------------------


@worker("resource_allocator")
async def resource_allocator(context: Dict[str, Any]) -> Dict[str, Any]:
    """Worker that allocates multiple resources with partial failure handling."""

    resource_requests = context["resource_requests"]
    allocated_resources = []
    failed_allocations = []

    try:
        for request in resource_requests:
            resource_type = request["type"]
            resource_amount = request["amount"]

            try:
                # Attempt resource allocation
                if resource_type == "compute":
                    resource_id = allocate_compute_resource(resource_amount)
                elif resource_type == "storage":
                    resource_id = allocate_storage_resource(resource_amount)
                elif resource_type == "network":
                    resource_id = allocate_network_resource(resource_amount)
                else:
                    raise ValueError(f"Unknown resource type: {resource_type}")

                allocated_resources.append(
                    {
                        "resource_id": resource_id,
                        "type": resource_type,
                        "amount": resource_amount,
                        "allocated_at": datetime.now(UTC).isoformat(),
                    }
                )

            except ResourceUnavailableError as e:
                failed_allocations.append(
                    {
                        "type": resource_type,
                        "amount": resource_amount,
                        "error": str(e),
                        "retry_possible": True,
                    }
                )

            except QuotaExceededError as e:
                failed_allocations.append(
                    {
                        "type": resource_type,
                        "amount": resource_amount,
                        "error": str(e),
                        "retry_possible": False,
                    }
                )

        # Determine overall status
        if not allocated_resources and failed_allocations:
            # Complete failure - clean up any partial allocations
            await cleanup_partial_allocations(allocated_resources)
            return {
                "status": "allocation_failed",
                "error": "No resources could be allocated",
                "failed_allocations": failed_allocations,
            }

        elif failed_allocations:
            # Partial success
            return {
                "status": "partial_allocation",
                "allocated_resources": allocated_resources,
                "failed_allocations": failed_allocations,
                "warning": "Some resource allocations failed",
            }

        else:
            # Complete success
            return {
                "status": "allocation_successful",
                "allocated_resources": allocated_resources,
                "total_resources": len(allocated_resources),
            }

    except Exception as e:
        # Unexpected error - clean up all allocations
        await cleanup_partial_allocations(allocated_resources)
        raise WorkerExecutionError(f"Resource allocation failed: {str(e)}")


async def cleanup_partial_allocations(allocated_resources):
    """Clean up partially allocated resources."""
    for resource in allocated_resources:
        try:
            release_resource(resource["resource_id"])
        except Exception as cleanup_error:
            # Log cleanup failures but don't raise
            print(f"Failed to clean up resource {resource['resource_id']}: {cleanup_error}")


# Custom exceptions for resource allocation
class ResourceUnavailableError(Exception):
    """Resource temporarily unavailable."""

    pass


class QuotaExceededError(Exception):
    """Resource quota exceeded."""

    pass


# Compensation worker for resource allocation
@worker("release_resources")
async def release_resources(context: Dict[str, Any]) -> Dict[str, Any]:
    """Compensation worker to release allocated resources."""
    allocated_resources = context.get("allocated_resources", [])

    if not allocated_resources:
        return {"status": "no_resources_to_release"}

    released_resources = []
    failed_releases = []

    for resource in allocated_resources:
        resource_id = resource["resource_id"]

        try:
            release_resource(resource_id)
            released_resources.append(resource_id)
        except Exception as e:
            failed_releases.append(
                {"resource_id": resource_id, "error": str(e), "requires_manual_intervention": True}
            )

    return {
        "status": "release_completed",
        "released_resources": released_resources,
        "failed_releases": failed_releases,
        "release_timestamp": datetime.now(UTC).isoformat(),
    }


# ---- the step after allocation, and the workflow ------------------------------------------------


@worker("deploy_application")
async def deploy_application(context: Dict[str, Any]) -> Dict[str, Any]:
    """Deploy onto the allocated resources; a broken image fails its health check for good."""
    image = context["image"]
    if image.endswith(":broken"):
        raise WorkerExecutionError(f"Image {image} failed its health check")
    return {
        "deployment_status": "running",
        "deployed_on": [r["resource_id"] for r in context.get("allocated_resources", [])],
    }


WORKERS = [resource_allocator, release_resources, deploy_application]


def allocation_failed(output: dict[str, Any]) -> bool:
    """Nothing could be allocated: the seed reports it as a dict; here it fails the step."""
    return output.get("status") == "allocation_failed"


def create_provisioning_workflow() -> WorkflowDefinition:
    return (
        WorkflowBuilder("provision_environment")
        .add_step("allocate", resource_allocator, compensation=release_resources, fail_if=allocation_failed)
        .add_step("deploy", deploy_application)
        .build()
    )


# ---- running it ---------------------------------------------------------------------------------


def request(image: str = "shop:1.4", **amounts: int) -> dict[str, Any]:
    """A workflow input asking for ``amounts`` ({type: amount}) and deploying ``image`` on them."""
    return {"image": image, "resource_requests": [{"type": t, "amount": a} for t, a in amounts.items()]}


def summarise(
    status: dict[str, Any], allocation: dict[str, Any], compensation_output: dict[str, Any] | None
) -> dict[str, Any]:
    history = status["execution_history"]
    return {
        "state": status["state"].value,
        "steps": {name: step["status"] for name, step in status["steps"].items()},
        "ran": [e["worker"] for e in history if e["kind"] == "execute" and e.get("worker")],
        "compensations": [e["worker"] for e in history if e["kind"] == "compensate" and e.get("worker")],
        "allocation_status": allocation.get("status"),
        "allocated": [r["resource_id"] for r in allocation.get("allocated_resources", [])],
        "failed_allocations": allocation.get("failed_allocations", []),
        "release": compensation_output,
        "error": (status["error"] or {}).get("message"),
    }


async def run_request(rt: Runtime, workflow_id: str, context: dict[str, Any]) -> dict[str, Any]:
    status = await rt.run(workflow_id, context)
    step = status["steps"]["allocate"]
    return summarise(status, step.get("output") or {}, step.get("compensation_output"))


async def main(store: str = "memory://") -> dict[str, dict[str, Any]]:
    """Run every branch of the allocator once; returns each scenario's summary by name."""
    datacenter.reset()
    wf = create_provisioning_workflow()
    outcomes: dict[str, dict[str, Any]] = {}
    async with Runtime(workers=WORKERS, workflows=[wf], store=store) as rt:
        outcomes["full_success"] = await run_request(rt, wf.id, request(compute=4, storage=100))
        outcomes["partial_allocation"] = await run_request(
            rt, wf.id, request(compute=4, storage=600, network=6)
        )
        outcomes["nothing_allocated"] = await run_request(rt, wf.id, request(storage=600, network=6))
        outcomes["unknown_type"] = await run_request(rt, wf.id, request(compute=2, gpu=1))
        outcomes["deploy_fails"] = await run_request(rt, wf.id, request("shop:broken", compute=2, storage=50))
        datacenter.stuck_types = {"network"}
        outcomes["release_fails"] = await run_request(rt, wf.id, request("shop:broken", compute=2, network=1))
        datacenter.stuck_types = set()
    return outcomes


def print_summary(outcomes: dict[str, dict[str, Any]]) -> None:
    for name, o in outcomes.items():
        print(f"{name}: {o['state']}  (allocator said {o['allocation_status']!r})")
        if o["allocated"]:
            print(f"    allocated: {', '.join(o['allocated'])}")
        for failure in o["failed_allocations"]:
            print(f"    not allocated: {failure['type']} x{failure['amount']}: {failure['error']}")
        if o["error"]:
            print(f"    error: {o['error']}")
        if o["release"]:
            print(f"    released: {', '.join(o['release']['released_resources']) or 'nothing'}")
            for stuck in o["release"]["failed_releases"]:
                print(f"    needs a person: {stuck['resource_id']}: {stuck['error']}")
    print(f"still allocated: {sorted(datacenter.allocated)}")


if __name__ == "__main__":
    print_summary(asyncio.run(main()))
