"""The schema is a contract: check schemas when a task loads, validate every result after decoding."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import jsonschema
from jsonschema import exceptions as js_exc
from jsonschema.validators import validator_for


def pointer_of(path: Iterable[Any]) -> str:
    """A JSON Pointer (RFC 6901) for a jsonschema error path ("" is the whole document)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def schema_problem(schema: Any) -> tuple[str, str] | None:
    """None when `schema` is a usable JSON Schema, else (message, JSON Pointer of the bad part)."""
    if not isinstance(schema, dict | bool):
        return (f"a JSON Schema must be an object or a boolean, not {type(schema).__name__}", "")
    if isinstance(schema, bool):
        return None
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except js_exc.SchemaError as err:
        best = js_exc.best_match([err]) if err.context else err
        return (best.message, pointer_of(best.path))
    try:  # unresolvable $ref shows up only when used; exercise them now
        validator = cls(schema)
        validator.is_valid(None)
        validator.is_valid({})
        validator.is_valid([])
    except js_exc._RefResolutionError as err:  # type: ignore[attr-defined]
        return (f"unresolvable $ref: {err}", "")
    except Exception as err:  # referencing.exceptions.Unresolvable and friends
        if "Unresolvable" in type(err).__name__ or "ref" in str(err).lower():
            return (f"unresolvable $ref: {err}", "")
        raise
    return None


def _exact_multiple_of(validator: Any, d_b: Any, instance: Any, schema: Any) -> Iterator[js_exc.ValidationError]:
    """`multipleOf` in exact decimal arithmetic (jsonschema's float division rejects 19.99 / 0.01)."""
    if not validator.is_type(instance, "number") or not validator.is_type(d_b, "number"):
        return
    try:
        exact = Fraction(str(instance)) % Fraction(str(d_b)) == 0
    except (ValueError, ZeroDivisionError, OverflowError):
        exact = False
    if not exact:
        yield js_exc.ValidationError(f"{instance!r} is not a multiple of {d_b}")


def _validator(schema: Any) -> Any:
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    exact = jsonschema.validators.extend(cls, {"multipleOf": _exact_multiple_of})
    return exact(schema, format_checker=cls.FORMAT_CHECKER)


def validation_errors(schema: Any, instance: Any, limit: int = 5) -> list[str]:
    """Validator messages (with the JSON Pointer of each bad value), best first; [] when valid."""
    validator = _validator(schema)
    errors = sorted(validator.iter_errors(instance), key=js_exc.relevance)
    return [f"{pointer_of(e.absolute_path) or '/'}: {e.message}" for e in errors[:limit]]
