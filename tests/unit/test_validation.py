"""The seed's DataValidator schema dicts as pydantic models: rules, every problem reported, use in workers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from multiagents import FakeClock, RetryPolicy, SagaState, WorkflowBuilder, worker
from multiagents.errors import DefinitionError, ValidationError
from multiagents.validation import schema_model, validate

USER_SCHEMA: dict[str, dict[str, Any]] = {
    "user_id": {"required": True, "type": str, "min_length": 1},
    "email": {"required": True, "type": str, "min_length": 5},
    "age": {"required": False, "type": int, "min": 0, "max": 150},
    "balance": {"required": False, "type": float, "min": 0},
}

GOOD = {"user_id": "u-1", "email": "ada@example.com", "age": 36, "balance": 10.5}
BAD = {"age": 200, "balance": 1.0}


def problems(data: Any, schema: Any = USER_SCHEMA) -> list[str]:
    with pytest.raises(ValidationError) as info:
        validate(data, schema)
    return info.value.errors


def test_valid_user_passes_and_keeps_extra_keys() -> None:
    """Valid data passes; keys outside the schema are kept; absent optional fields are not invented."""
    assert validate({**GOOD, "plan": "pro"}, USER_SCHEMA) == {**GOOD, "plan": "pro"}
    assert validate({"user_id": "u", "email": "a@b.cd"}, USER_SCHEMA) == {"user_id": "u", "email": "a@b.cd"}


def test_every_problem_is_listed_in_one_error() -> None:
    """Missing user_id and email, and age 200, come back together, one string per problem naming the field."""
    errors = problems(BAD)
    assert len(errors) == 3
    assert [e.split(":")[0] for e in errors] == ["user_id", "email", "age"]
    assert "must be <= 150" in errors[2]


def test_bad_type_and_short_email_are_listed_with_the_missing_field() -> None:
    """A str age and a 3-character email are reported alongside a missing user_id."""
    errors = problems({"email": "a@b", "age": "36"})
    assert [e.split(":")[0] for e in errors] == ["user_id", "email", "age"]
    assert "at least 5 characters" in errors[1]
    assert "expected int, got str" in errors[2]


def test_types_are_checked_with_isinstance_like_the_seed() -> None:
    """'5' is not an int and an int balance is not a float (as in the seed), but True passes as an int."""
    assert problems({**GOOD, "age": "5"}) == ["age: expected int, got str"]
    assert problems({**GOOD, "balance": 10}) == ["balance: expected float, got int"]
    assert problems({**GOOD, "age": None}) == ["age: expected int, got NoneType"]
    assert validate({**GOOD, "age": True}, USER_SCHEMA)["age"] is True


def test_range_rules_use_the_seeds_comparisons() -> None:
    """min and max fail strictly outside the bounds; the bounds themselves pass; negative balance fails."""
    assert validate({**GOOD, "age": 0}, USER_SCHEMA)["age"] == 0
    assert validate({**GOOD, "age": 150}, USER_SCHEMA)["age"] == 150
    assert problems({**GOOD, "age": -1}) == ["age: must be >= 0"]
    assert problems({**GOOD, "balance": -0.01}) == ["balance: must be >= 0"]


def test_extensions_max_length_choices_and_tuple_types() -> None:
    """max_length, choices and a tuple of types work; an untyped value that cannot be compared fails."""
    schema: dict[str, dict[str, Any]] = {
        "code": {"type": (str, int), "max_length": 4},
        "plan": {"choices": ["free", "pro"]},
        "score": {"min": 0},
    }
    assert validate({"code": 1234, "plan": "pro", "score": 3}, schema) == {
        "code": 1234,
        "plan": "pro",
        "score": 3,
    }
    errors = problems({"code": 1.5, "plan": "gold", "score": "high"}, schema)
    assert errors == [
        "code: expected str or int, got float",
        "plan: must be one of ['free', 'pro'], got 'gold'",
        "score: cannot be compared with 0",
    ]
    assert problems({"code": "12345"}, schema) == ["code: must be at most 4 characters, got 5"]
    assert problems({"opt": 3}, {"opt": {"choices": [{"a": 1}]}}) == ["opt: must be one of [{'a': 1}], got 3"]


def test_keys_that_are_not_attribute_names_are_validated_under_their_key() -> None:
    """A key like 'user-id' or 'json' still validates and dumps under its own name."""
    schema: dict[str, dict[str, Any]] = {"user-id": {"required": True, "type": str}, "json": {"type": int}}
    assert validate({"user-id": "a", "json": 1}, schema) == {"user-id": "a", "json": 1}
    assert problems({"json": "1"}, schema) == ["user-id: Field required", "json: expected int, got str"]


def test_unknown_rule_raises_definition_error_naming_field_and_rule() -> None:
    """A misspelt rule is refused when the model is built, with the field and the rule in the message."""
    with pytest.raises(DefinitionError, match=r"'age'.*'maximum'"):
        schema_model({"age": {"type": int, "maximum": 3}})


@pytest.mark.parametrize(
    "rules",
    [{"type": "int"}, {"min_length": -1}, {"choices": "ab"}, {"required": "yes"}, "not a dict"],
)
def test_malformed_rules_raise_definition_error(rules: Any) -> None:
    """Rule values of the wrong shape are refused at build time, not at validation time."""
    with pytest.raises(DefinitionError, match="'f'"):
        schema_model({"f": rules})


def test_validate_accepts_any_pydantic_model_and_returns_its_full_dump() -> None:
    """With a hand-written model, validate returns the dump including defaults, or lists every problem."""

    class Order(BaseModel):
        order_id: int
        express: bool = False

    assert validate({"order_id": 3}, Order) == {"order_id": 3, "express": False}
    with pytest.raises(ValidationError, match="order_id"):
        validate({}, Order)


def test_schema_model_instance_has_attributes_and_extras() -> None:
    """The model built from USER_SCHEMA exposes fields as attributes and extra keys in model_extra."""
    model = schema_model(USER_SCHEMA, name="User")
    user = model.model_validate({**GOOD, "plan": "pro"})
    assert model.__name__ == "User"
    assert user.user_id == "u-1"  # type: ignore[attr-defined]
    assert user.model_extra == {"plan": "pro"}


# ---- as a worker's input_model, inside a Runtime ------------------------------------------------


def registration_workflow(calls: list[Any]) -> Any:
    @worker("register", input_model=schema_model(USER_SCHEMA, name="User"))
    async def register(user: Any) -> dict[str, Any]:
        calls.append(user)
        return {"registered": user.user_id}

    policy = RetryPolicy(max_attempts=3, initial_interval=1, jitter=0)
    return WorkflowBuilder("registration").add_step("register", register, retry_policy=policy).build()


async def test_worker_with_schema_input_fails_validation_once_listing_every_field(
    make_runtime: Any, clock: FakeClock
) -> None:
    """Bad input ends the workflow failed, category validation, after one attempt, naming every bad field."""
    calls: list[Any] = []
    async with make_runtime(workflows=[registration_workflow(calls)]) as rt:
        status = await clock.run_until(rt.run("registration", {"email": "a@b", "age": 200}))
    assert status["state"] == SagaState.FAILED
    assert status["error"]["category"] == "validation"
    tries = [e for e in status["execution_history"] if e["step"] == "register" and e["kind"] == "execute"]
    assert [t["status"] for t in tries] == ["failed"]
    assert calls == []
    message = status["error"]["message"]
    for expected in (
        "user_id: Field required",
        "email: must be at least 5 characters",
        "age: must be <= 150",
    ):
        assert expected in message


async def test_worker_with_schema_input_completes_on_good_input(make_runtime: Any, clock: FakeClock) -> None:
    """Good input reaches the worker as a model instance and the workflow completes."""
    calls: list[Any] = []
    async with make_runtime(workflows=[registration_workflow(calls)]) as rt:
        status = await clock.run_until(rt.run("registration", {**GOOD, "plan": "pro"}))
    assert status["state"] == SagaState.COMPLETED
    assert status["step_results"]["register"] == {"registered": "u-1"}
    assert len(calls) == 1 and calls[0].model_extra == {"plan": "pro"}
