"""Section 3 of the error-handling patterns: calling an external service that fails in many ways.

``external_service_caller``, ``call_external_service`` and the three exceptions are the seed's code. The
seed's hand-written ``retry_on_failure`` is gone: ``call_external_service`` is decorated with the
framework's ``multiagents.retry_on_failure``, which takes the seed's arguments and keeps its meaning
(``max_retries`` attempts in all, waits of ``backoff_factor ** n`` seconds: 1 s then 1.5 s here, and
``WorkerExecutionError("Operation failed after 3 attempts: ...")`` when they run out). The changes:

- The decorator line is the seed's (``max_retries=3, backoff_factor=1.5``, default list). The seed's
  default names its own ``ServiceUnavailableError``; the framework's default matches that class by name,
  so it is retried as in the seed, and a ``RateLimitError`` reaches ``external_service_caller`` at once.
- The decorator waits on :data:`retry_clock` (``clock=``), and ``on_retry=`` prints the seed's
  "Attempt n failed ... Retrying in ...s" line, which the framework would otherwise only log.
- The exceptions are defined before ``call_external_service``: the seed's own decorator reads
  ``ServiceUnavailableError`` when it decorates, so in the seed's order its module fails to import with
  a ``NameError``; the order is kept so the seed's code reads the same.
- ``datetime.utcnow()`` (deprecated since Python 3.12) became ``datetime.now(UTC)``.
- Randomness comes from :data:`rng` (seed it with :func:`seed`) instead of the ``random`` module, so a
  run can be repeated exactly; the simulated processing time waits on :data:`retry_clock` too.
- :data:`SCRIPTS` lets a caller force a service's next outcomes, so each branch can be shown on purpose.

The retries happen inside one attempt of the step: the engine sees a single attempt that either
returns or raises. The seed reports a timeout, an unavailable service, a failed login or a rate limit
by returning a dict, which the engine counts as success; the ``call_service_strict`` workflow adds
``fail_if=`` to make anything but ``"status": "success"`` a failure.

Run it from the project root: ``python -m examples.external_service`` (or
``python examples/external_service.py``). It waits the real backoff, a few seconds in all; ``main`` takes
a ``FakeClock`` to make those waits instant.
"""

# The seed's code is kept as written: typing.Dict annotations, `raise ...` inside `except` without `from`,
# `str(e)` inside f-strings and `asyncio.TimeoutError` stay.
# ruff: noqa: UP006, UP035, UP041, B904, RUF010

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Dict, TypeVar

from multiagents import (
    Clock,
    Runtime,
    SystemClock,
    WorkflowBuilder,
    WorkflowDefinition,
    retry_on_failure,
    worker,
)
from multiagents.core.exceptions import WorkerExecutionError
from multiagents.resilience import RetryEvent

T = TypeVar("T")

rng = random.Random(0)


class SwappableClock:
    """The clock the retries wait on: the system's, unless :meth:`use` put another in its place.

    ``@retry_on_failure(clock=...)`` takes its clock once, when the module is imported; handing it this
    stand-in lets :func:`main` (and tests) run the same decorated function on a ``FakeClock``.
    """

    def __init__(self) -> None:
        self.inner: Clock = SystemClock()

    def use(self, clock: Clock | None) -> None:
        self.inner = clock if clock is not None else SystemClock()

    def now(self) -> float:
        return self.inner.now()

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        return await self.inner.wait_for(aw, timeout)


retry_clock = SwappableClock()
retry_events: list[RetryEvent] = []  # every in-process retry, in order: what on_retry was told


def report_retry(event: RetryEvent) -> None:
    """The seed's decorator printed each retry; the framework's calls this before each wait instead."""
    retry_events.append(event)
    print(f"Attempt {event.attempt} failed: {event.exception}. Retrying in {event.delay:g}s...")


# service name -> the outcomes of its next calls ("connection_error", "timeout", "service_unavailable",
# "rate_limit", "authentication", "hang", or "success"); once a script runs out, calls succeed.
SCRIPTS: dict[str, list[str]] = {}


def seed(value: int) -> None:
    """Make the random failures repeatable."""
    rng.seed(value)


def scripted_outcome(service_name: str) -> str | None:
    """The forced outcome of this call, "success" when the script ran out, None if unscripted."""
    if service_name not in SCRIPTS:
        return None
    script = SCRIPTS[service_name]
    return script.pop(0) if script else "success"


# ---- the seed's code ----------------------------------------------------------------------------


# Custom exceptions for external service calls
class ServiceUnavailableError(Exception):
    """Service is temporarily unavailable."""

    pass


class AuthenticationError(Exception):
    """Authentication failed."""

    pass


class RateLimitError(Exception):
    """Rate limit exceeded."""

    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after


@worker("external_service_caller")
async def external_service_caller(context: Dict[str, Any]) -> Dict[str, Any]:
    """Worker that calls external services with comprehensive error handling."""

    service_name = context["service_name"]
    request_data = context["request_data"]
    timeout = context.get("timeout", 30)

    try:
        # Call external service with timeout
        response = await asyncio.wait_for(call_external_service(service_name, request_data), timeout=timeout)

        return {
            "service_response": response,
            "service_name": service_name,
            "response_timestamp": datetime.now(UTC).isoformat(),
            "status": "success",
        }

    except asyncio.TimeoutError:
        return {
            "status": "timeout",
            "error": f"Service {service_name} timed out after {timeout}s",
            "service_name": service_name,
            "retry_recommended": True,
        }

    except ServiceUnavailableError as e:
        return {
            "status": "service_unavailable",
            "error": str(e),
            "service_name": service_name,
            "retry_recommended": True,
            "retry_after": 60,  # Suggest retry after 60 seconds
        }

    except AuthenticationError as e:
        return {
            "status": "authentication_failed",
            "error": str(e),
            "service_name": service_name,
            "retry_recommended": False,
            "requires_credential_refresh": True,
        }

    except RateLimitError as e:
        return {
            "status": "rate_limited",
            "error": str(e),
            "service_name": service_name,
            "retry_recommended": True,
            "retry_after": e.retry_after if hasattr(e, "retry_after") else 300,
        }

    except Exception as e:
        # Unexpected error
        raise WorkerExecutionError(f"Unexpected error calling {service_name}: {str(e)}")


@retry_on_failure(
    max_retries=3,
    backoff_factor=1.5,
    clock=retry_clock,
    on_retry=report_retry,
)
async def call_external_service(service_name: str, request_data: Dict[str, Any]):
    """Simulate external service call with potential failures."""

    # Simulate various failure modes
    failure_rate = 0.3
    failure_type = scripted_outcome(service_name)
    if failure_type is None and rng.random() < failure_rate:
        failure_type = rng.choice(["connection_error", "timeout", "service_unavailable", "rate_limit"])

    if failure_type == "connection_error":
        raise ConnectionError("Failed to connect to service")
    elif failure_type == "timeout":
        raise TimeoutError("Request timed out")
    elif failure_type == "service_unavailable":
        raise ServiceUnavailableError("Service temporarily unavailable")
    elif failure_type == "rate_limit":
        raise RateLimitError("Rate limit exceeded", retry_after=120)
    elif failure_type == "authentication":
        raise AuthenticationError("API token expired")
    elif failure_type == "hang":
        await asyncio.Event().wait()  # never answers; the caller's asyncio.wait_for gives up

    # Simulate successful response
    await retry_clock.sleep(0.1)  # Simulate processing time
    return {
        "result": f"Success from {service_name}",
        "data": request_data,
        "response_id": f"resp_{rng.randint(1000, 9999)}",
    }


# ---- workflows and running them -----------------------------------------------------------------

WORKERS = [external_service_caller]


def call_failed(output: dict[str, Any]) -> bool:
    return output.get("status") != "success"


def create_workflows() -> list[WorkflowDefinition]:
    """``call_service`` as the seed has it, and ``call_service_strict`` where a returned failure fails."""
    return [
        WorkflowBuilder("call_service").add_step("call", external_service_caller).build(),
        WorkflowBuilder("call_service_strict")
        .add_step("call", external_service_caller, fail_if=call_failed)
        .build(),
    ]


def summarise(status: dict[str, Any]) -> dict[str, Any]:
    output = status["step_results"].get("call") or {}
    return {
        "state": status["state"].value,
        "attempts": status["steps"]["call"]["attempts"],
        "call_status": output.get("status"),
        "retry_after": output.get("retry_after"),
        "response_id": (output.get("service_response") or {}).get("response_id"),
        "error": (status["error"] or {}).get("message"),
        "error_category": (status["error"] or {}).get("category"),
    }


def call(service_name: str, timeout: float = 30, **request_data: Any) -> dict[str, Any]:
    return {"service_name": service_name, "request_data": request_data, "timeout": timeout}


# scenario -> (workflow, input, forced outcomes of that service)
SCENARIOS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "recovers_after_retries": (
        "call_service",
        call("inventory_api", sku="A-1"),
        ["connection_error", "timeout"],
    ),
    "retries_exhausted": ("call_service", call("billing_api"), ["service_unavailable"] * 3),
    "rate_limited": ("call_service", call("search_api", q="boots"), ["rate_limit"]),
    "rate_limited_strict": ("call_service_strict", call("search_api", q="boots"), ["rate_limit"]),
    "authentication_failed": ("call_service", call("crm_api"), ["authentication"]),
    "times_out": ("call_service", call("slow_api", timeout=0.05), ["hang"]),
}


async def main(
    store: str = "memory://", random_seed: int = 7, random_calls: int = 6, clock: Clock | None = None
) -> dict[str, Any]:
    """Run each forced scenario, then ``random_calls`` calls with seeded random failures.

    ``clock`` (a ``FakeClock`` in tests, driven by ``clock.run_until(main(clock=clock))``) is the
    Runtime's and the retries' clock for the run; the retries go back to the system clock afterwards.
    """
    seed(random_seed)
    SCRIPTS.clear()
    retry_events.clear()
    retry_clock.use(clock)
    outcomes: dict[str, Any] = {}
    try:
        async with Runtime(workers=WORKERS, workflows=create_workflows(), store=store, clock=clock) as rt:
            for name, (workflow_id, context, script) in SCENARIOS.items():
                SCRIPTS[context["service_name"]] = list(script)
                outcomes[name] = summarise(await rt.run(workflow_id, context))
                del SCRIPTS[context["service_name"]]
            outcomes["random"] = [
                summarise(await rt.run("call_service", call("weather_api", city="Oslo")))
                for _ in range(random_calls)
            ]
    finally:
        retry_clock.use(None)
    return outcomes


def print_summary(outcomes: dict[str, Any]) -> None:
    for name, o in outcomes.items():
        if name == "random":
            print("random: " + ", ".join(f"{r['state']}/{r['call_status']}" for r in o))
            continue
        detail = o["call_status"] or o["error"]
        print(f"{name}: {o['state']} ({detail})")


if __name__ == "__main__":
    print_summary(asyncio.run(main()))
