"""The seed's ``DataValidator`` schema dicts as pydantic v2 models.

The error-handling patterns validate input against a dict of rules per field::

    USER_SCHEMA = {
        "user_id": {"required": True, "type": str, "min_length": 1},
        "email": {"required": True, "type": str, "min_length": 5},
        "age": {"required": False, "type": int, "min": 0, "max": 150},
        "balance": {"required": False, "type": float, "min": 0},
    }

:func:`schema_model` turns such a dict into a pydantic model, so the rules can guard a worker before
it runs — ``@worker("register", input_model=schema_model(USER_SCHEMA))`` — and every problem is
reported at once as a ``validation`` failure, which the engine never retries. :func:`validate` checks
a dict directly and raises :class:`~multiagents.errors.ValidationError` listing every problem.

The rules mean what the seed's ``DataValidator`` made them mean:

- ``required`` (default False): the key must be present. An optional key may be absent; if present it
  is checked like any other (so an explicit ``None`` fails a ``type`` rule, as in the seed).
- ``type``: a class or a tuple of classes, checked with ``isinstance`` and nothing else — no coercion.
  ``"5"`` is not an ``int``; an ``int`` balance is not a ``float`` (``isinstance(1, float)`` is
  false); ``True`` *is* an ``int`` (``bool`` subclasses ``int``). Pydantic's strict mode differs on
  the last two and cannot apply to arbitrary classes, so the check is an ``isinstance`` validator.
- ``min`` / ``max``: the value fails when ``value < min`` or ``value > max``; a value that cannot be
  compared with the bound fails too (the seed would have crashed with ``TypeError``).
- ``min_length`` / ``max_length``: on ``len(str(value))``, as the seed measured length.
- ``choices``: the value must be one of a list of allowed values.

A value of the wrong type is reported once, for its type; its other rules are not tried. Keys in the
data that the schema does not name are allowed and kept. A rule name the schema does not know raises
:class:`~multiagents.errors.DefinitionError` naming the field and the rule, when the model is built.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, create_model
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from multiagents.errors import DefinitionError, ValidationError

__all__ = ["RULES", "schema_model", "validate"]

RULES = frozenset({"required", "type", "min", "max", "min_length", "max_length", "choices"})

Schema = Mapping[str, Mapping[str, Any]]


class _SchemaModel(BaseModel):
    """Base of the models :func:`schema_model` builds; extra keys are allowed and kept."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True, protected_namespaces=())


def _fail(kind: str, message: str) -> PydanticCustomError:
    # Without a context the message is not treated as a template: braces in reprs stay as they are.
    return PydanticCustomError(kind, message)


def _type_check(field: str, tp: Any) -> tuple[Any, PlainValidator]:
    """The annotation and the ``isinstance`` validator for a ``type`` rule."""
    types = tp if isinstance(tp, tuple) else (tp,)
    if not types or not all(isinstance(t, type) for t in types):
        raise DefinitionError(
            f"schema field {field!r}: rule 'type' takes a class or a tuple of classes, got {tp!r}"
        )
    expected = " or ".join(t.__name__ for t in types)
    annotation: Any = types[0] if len(types) == 1 else Union[types]  # noqa: UP007 (a runtime tuple)

    def check(value: Any) -> Any:
        if not isinstance(value, types):
            raise _fail("type", f"expected {expected}, got {type(value).__name__}")
        return value

    return annotation, PlainValidator(check, json_schema_input_type=annotation)


def _bound(field: str, rule: str, limit: Any) -> AfterValidator:
    below = rule == "min"

    def check(value: Any) -> Any:
        try:
            bad = value < limit if below else value > limit
        except TypeError:
            raise _fail(rule, f"cannot be compared with {limit!r}") from None
        if bad:
            raise _fail(rule, f"must be {'>=' if below else '<='} {limit!r}")
        return value

    return AfterValidator(check)


def _length(field: str, rule: str, limit: Any) -> AfterValidator:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise DefinitionError(f"schema field {field!r}: rule {rule!r} takes an int >= 0, got {limit!r}")
    shortest = rule == "min_length"

    def check(value: Any) -> Any:
        size = len(str(value))
        if size < limit if shortest else size > limit:
            raise _fail(rule, f"must be at {'least' if shortest else 'most'} {limit} characters, got {size}")
        return value

    return AfterValidator(check)


def _choices(field: str, allowed: Any) -> AfterValidator:
    if not isinstance(allowed, list | tuple | set | frozenset) or not allowed:
        raise DefinitionError(
            f"schema field {field!r}: rule 'choices' takes a non-empty list, got {allowed!r}"
        )
    options = list(allowed)

    def check(value: Any) -> Any:
        if value not in options:
            raise _fail("choices", f"must be one of {options!r}, got {value!r}")
        return value

    return AfterValidator(check)


_CHECKS: dict[str, Callable[[str, str, Any], AfterValidator]] = {
    "min": _bound,
    "max": _bound,
    "min_length": _length,
    "max_length": _length,
    "choices": lambda field, _rule, allowed: _choices(field, allowed),
}


def _field(field: str, rules: Any) -> tuple[Any, Any]:
    if not isinstance(rules, Mapping):
        raise DefinitionError(f"schema field {field!r}: rules must be a dict, got {type(rules).__name__}")
    unknown = [rule for rule in rules if rule not in RULES]
    if unknown:
        raise DefinitionError(
            f"schema field {field!r}: unknown rule {unknown[0]!r}; the rules are {sorted(RULES)}"
        )
    required = rules.get("required", False)
    if not isinstance(required, bool):
        raise DefinitionError(
            f"schema field {field!r}: rule 'required' takes True or False, got {required!r}"
        )
    metadata: list[Any] = []
    annotation: Any = Any
    if "type" in rules:
        annotation, type_check = _type_check(field, rules["type"])
        metadata.append(type_check)
    metadata += [make(field, rule, rules[rule]) for rule, make in _CHECKS.items() if rule in rules]
    if metadata:
        annotation = Annotated[(annotation, *metadata)]
    # An absent optional key stays absent in validate()'s output (exclude_unset); None is never checked.
    return annotation, Field(... if required else None, alias=field)


def _attribute_names(schema: Schema) -> dict[str, str]:
    """A Python attribute name per schema key; keys that cannot be one are reached by alias only."""

    def usable(key: str) -> bool:
        return (
            key.isidentifier()
            and not keyword.iskeyword(key)
            and not key.startswith("_")
            and not hasattr(BaseModel, key)
        )

    taken = {key for key in schema if usable(key)}
    names: dict[str, str] = {}
    spare = 0
    for key in schema:
        if key in taken:
            names[key] = key
            continue
        while f"field_{spare}" in taken:
            spare += 1
        names[key] = f"field_{spare}"
        taken.add(names[key])
    return names


def schema_model(schema: Schema, name: str = "Schema") -> type[BaseModel]:
    """Build a pydantic model from a ``DataValidator``-style schema dict (rules in the module docstring).

    Fields are attributes of the model under their own names (a key that is not a valid attribute
    name, or clashes with a ``BaseModel`` method, is renamed and still validated and dumped under
    its key); keys outside the schema are kept in ``model_extra``.
    """
    if not isinstance(schema, Mapping):
        raise DefinitionError(f"a schema is a dict of field -> rules, got {type(schema).__name__}")
    for key in schema:
        if not isinstance(key, str) or not key:
            raise DefinitionError(f"schema field names must be non-empty strings, got {key!r}")
    names = _attribute_names(schema)
    fields: dict[str, Any] = {names[key]: _field(key, rules) for key, rules in schema.items()}
    model: type[BaseModel] = create_model(name, __base__=_SchemaModel, **fields)
    return model


def _problems(exc: PydanticValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]


def validate(data: Any, model_or_schema: type[BaseModel] | Schema) -> dict[str, Any]:
    """Check ``data`` and return it as a dict; raise ``ValidationError`` listing every problem.

    With a schema dict the result holds the keys given (absent optional fields are not filled in,
    extra keys are kept); with any other model it is the model's full dump, defaults included.
    """
    if isinstance(model_or_schema, type) and issubclass(model_or_schema, BaseModel):
        model = model_or_schema
    else:
        model = schema_model(model_or_schema)
    try:
        instance = model.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationError(f"data does not match {model.__name__}", _problems(exc)) from None
    return instance.model_dump(by_alias=True, exclude_unset=issubclass(model, _SchemaModel))
