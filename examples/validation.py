"""Section 1 of the error-handling patterns: input validation errors, which must not be retried.

``validation_worker``, ``DataValidator``, ``USER_SCHEMA`` and ``schema_validated_worker`` are the seed's
code, unchanged but for ``datetime.utcnow()`` (deprecated since Python 3.12), which became
``datetime.now(UTC)``. A ``ValueError`` from a worker is a validation failure: the engine does not retry
it and fails the step at once. Here the validators run before ``apply_action``, the only step with a
compensation, so a bad request ends ``failed`` with nothing done and nothing to undo.

The framework can check the same schema itself, before the worker runs: ``schema_model(USER_SCHEMA)``
builds a pydantic model with the ``DataValidator`` rules, and ``@worker(..., input_model=...)`` makes the
engine validate each step's input against it. Input that does not match fails the step as a
``validation`` failure, listing every field that is wrong, without calling the function; a function
that is called receives the input as a model instance. :func:`create_schema_checked_workflow` shows it.

Run it from the project root: ``python -m examples.validation`` (or ``python examples/validation.py``).
"""

# The seed's code is kept as written: typing.Dict annotations and a bare `raise e` stay.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Dict

from multiagents import Runtime, WorkflowBuilder, WorkflowDefinition, schema_model, worker

# ---- the seed's code ----------------------------------------------------------------------------


@worker("validation_worker")
async def validation_worker(context: Dict[str, Any]) -> Dict[str, Any]:
    """Worker with comprehensive input validation."""

    # Required field validation
    required_fields = ["user_id", "action_type", "data"]
    missing_fields = [field for field in required_fields if field not in context]

    if missing_fields:
        raise ValueError(f"Missing required fields: {missing_fields}")

    # Type validation
    user_id = context["user_id"]
    if not isinstance(user_id, (str, int)):
        raise ValueError("user_id must be string or integer")

    # Range validation
    if "amount" in context:
        amount = context["amount"]
        if not isinstance(amount, (int, float)) or amount < 0:
            raise ValueError("amount must be a non-negative number")

    # Enum validation
    action_type = context["action_type"]
    valid_actions = ["create", "update", "delete", "read"]
    if action_type not in valid_actions:
        raise ValueError(f"action_type must be one of: {valid_actions}")

    return {
        "validated_data": context,
        "validation_status": "passed",
        "validation_timestamp": datetime.now(UTC).isoformat(),
    }


# Advanced validation with custom validator
class DataValidator:
    """Reusable data validator."""

    def __init__(self, schema: Dict[str, Any]):
        self.schema = schema

    def validate(self, data: Dict[str, Any]) -> Dict[str, Any]:
        """Validate data against schema."""
        errors = []

        for field, rules in self.schema.items():
            if rules.get("required", False) and field not in data:
                errors.append(f"Missing required field: {field}")
                continue

            if field in data:
                value = data[field]

                # Type checking
                if "type" in rules and not isinstance(value, rules["type"]):
                    errors.append(f"Invalid type for {field}: expected {rules['type'].__name__}")

                # Range checking for numbers
                if "min" in rules and value < rules["min"]:
                    errors.append(f"{field} must be >= {rules['min']}")

                if "max" in rules and value > rules["max"]:
                    errors.append(f"{field} must be <= {rules['max']}")

                # String length checking
                if "min_length" in rules and len(str(value)) < rules["min_length"]:
                    errors.append(f"{field} must be at least {rules['min_length']} characters")

        if errors:
            raise ValueError(f"Validation errors: {errors}")

        return {"status": "valid", "errors": []}


# Usage with validator
USER_SCHEMA = {
    "user_id": {"required": True, "type": str, "min_length": 1},
    "email": {"required": True, "type": str, "min_length": 5},
    "age": {"required": False, "type": int, "min": 0, "max": 150},
    "balance": {"required": False, "type": float, "min": 0},
}


@worker("schema_validated_worker")
async def schema_validated_worker(context: Dict[str, Any]) -> Dict[str, Any]:
    """Worker using schema validation."""
    validator = DataValidator(USER_SCHEMA)

    try:
        validation_result = validator.validate(context)
        return {"validated_data": context, "validation_result": validation_result}
    except ValueError as e:
        # Re-raise validation errors without modification
        raise e


# ---- the action the validators guard ------------------------------------------------------------

applied: list[dict[str, Any]] = []  # what apply_action did and revert_action has not undone


@worker("apply_action")
async def apply_action(context: Dict[str, Any]) -> Dict[str, Any]:
    """Carry out the validated action; only reached when both validators passed."""
    record = {"user_id": context["user_id"], "action_type": context["action_type"], "data": context["data"]}
    applied.append(record)
    return {"action_status": "applied", "action_index": len(applied) - 1}


@worker("revert_action")
async def revert_action(context: Dict[str, Any]) -> Dict[str, Any]:
    """Compensation: undo apply_action. A validation failure happens before it, so this never runs."""
    applied.pop(context["action_index"])
    return {"compensation_status": "success"}


# ---- the same schema, checked by the framework ------------------------------------------------------

UserProfile = schema_model(USER_SCHEMA, "UserProfile")
registered: list[str] = []  # user ids register_profile was called with


@worker("register_profile", input_model=UserProfile)
async def register_profile(profile: Any) -> Dict[str, Any]:
    """Called only with input that satisfies USER_SCHEMA, as a UserProfile instance."""
    registered.append(profile.user_id)
    return {"registered_user": profile.user_id, "registered_email": profile.email}


WORKERS = [validation_worker, schema_validated_worker, apply_action, revert_action, register_profile]


def create_validated_action_workflow() -> WorkflowDefinition:
    return (
        WorkflowBuilder("validated_action")
        .add_step("validate_request", validation_worker)
        .add_step("validate_profile", schema_validated_worker)
        .add_step("apply_action", apply_action, compensation=revert_action)
        .build()
    )


def create_schema_checked_workflow() -> WorkflowDefinition:
    return (
        WorkflowBuilder("schema_checked_action")
        .add_step("register_profile", register_profile)
        .add_step("apply_action", apply_action, compensation=revert_action)
        .build()
    )


# ---- running it ---------------------------------------------------------------------------------

VALID_REQUEST = {
    "user_id": "user-42",
    "action_type": "create",
    "data": {"name": "Ada"},
    "amount": 25,
    "email": "ada@example.com",
    "age": 36,
}


def without(request: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != key}


SCENARIOS: dict[str, dict[str, Any]] = {
    "valid": VALID_REQUEST,
    "missing_field": without(VALID_REQUEST, "data"),
    "bad_amount": {**VALID_REQUEST, "amount": -5},
    "bad_action_type": {**VALID_REQUEST, "action_type": "drop_table"},
    "bad_profile": {**VALID_REQUEST, "age": 200, "email": "a@b"},
}


def summarise(status: dict[str, Any]) -> dict[str, Any]:
    history = status["execution_history"]
    error = status["error"] or {}
    return {
        "state": status["state"].value,
        "steps": {name: step["status"] for name, step in status["steps"].items()},
        "attempts": {name: step["attempts"] for name, step in status["steps"].items()},
        "ran": [e["worker"] for e in history if e["kind"] == "execute" and e.get("worker")],
        "compensations": [e["worker"] for e in history if e["kind"] == "compensate" and e.get("worker")],
        "failed_step": error.get("step"),
        "error_category": error.get("category"),
        "error": error.get("message"),
    }


# scenario -> request, for the workflow with the framework's check
SCHEMA_CHECKED_SCENARIOS: dict[str, dict[str, Any]] = {
    "schema_model_valid": {**VALID_REQUEST, "user_id": "user-7"},
    # every schema field wrong at once: too short, too short, too large, not a float
    "schema_model_bad_profile": {**VALID_REQUEST, "user_id": "", "email": "a@b", "age": 200, "balance": 5},
}


async def main(store: str = "memory://") -> dict[str, dict[str, Any]]:
    """Run each request through its workflow; returns each scenario's summary by name."""
    applied.clear()
    registered.clear()
    wf, checked = create_validated_action_workflow(), create_schema_checked_workflow()
    outcomes = {}
    async with Runtime(workers=WORKERS, workflows=[wf, checked], store=store) as rt:
        for name, request in SCENARIOS.items():
            outcomes[name] = summarise(await rt.run(wf.id, request))
        for name, request in SCHEMA_CHECKED_SCENARIOS.items():
            outcomes[name] = summarise(await rt.run(checked.id, request))
    return outcomes


def print_summary(outcomes: dict[str, dict[str, Any]]) -> None:
    for name, o in outcomes.items():
        print(f"{name}: {o['state']}  (ran: {', '.join(o['ran'])})")
        if o["error"]:
            print(f"    {o['failed_step']} [{o['error_category']}]: {o['error']}")
    print(f"actions applied: {len(applied)}; profiles registered: {registered}")


if __name__ == "__main__":
    print_summary(asyncio.run(main()))
