"""Building blocks of the spec models: strict models, number expressions, sweeps."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator, WithJsonSchema

from runner import expr


class StrictModel(BaseModel):
    """Unknown keys are errors (with a did-you-mean); values are frozen after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=False)


def _check_expr(value: Any) -> float | str:
    return expr.check(value)


def _check_list(value: Any, item) -> Any:
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list sweeps over nothing; give one value or several")
        return [item(v) for v in value]
    return item(value)


def _check_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def _check_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


_EXPR_SCHEMA = {
    "anyOf": [
        {"type": "number"},
        {"type": "string", "description": "a fraction like 8/255 or an expression like eps/4"},
    ]
}

Expr = Annotated[float | str, PlainValidator(_check_expr), WithJsonSchema(_EXPR_SCHEMA)]
"""A number, a fraction (``8/255``) or an expression of eps (``eps/4``)."""

ExprSweep = Annotated[
    Any,
    PlainValidator(lambda v: _check_list(v, _check_expr)),
    WithJsonSchema({"anyOf": [*_EXPR_SCHEMA["anyOf"], {"type": "array", "items": _EXPR_SCHEMA}]}),
]
"""An expression, or a list of them to sweep over."""

IntSweep = Annotated[
    Any,
    PlainValidator(lambda v: _check_list(v, _check_int)),
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]}
    ),
]
FloatSweep = Annotated[
    Any,
    PlainValidator(lambda v: _check_list(v, _check_float)),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]}),
]
