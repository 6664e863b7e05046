"""Building blocks of the spec models: strict models, number expressions, sweeps."""

from __future__ import annotations

import math
import unicodedata
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, WithJsonSchema

from runner import expr

# Upper bounds on sizes: far above any real experiment, low enough that a typo (epochs 1e9, n
# 1e12) fails at validation instead of running for years or allocating terabytes.
MAX_EPOCHS = 10_000
MAX_STEPS = 100_000  # attack iterations
MAX_BATCH = 65_536
MAX_EXAMPLES = 100_000_000
MAX_SEED = 2**32 - 1  # NumPy's seed range
MAX_PIXEL = 1e6  # |pixel_range| ends


class StrictModel(BaseModel):
    """Unknown keys are errors (with a did-you-mean); values are frozen after validation.

    Strict: a string is never coerced into a number (``epochs: "5"``) nor a number into a
    string; numbers must be finite (``.nan``, ``.inf`` are refused).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
        strict=True,
        allow_inf_nan=False,
    )


def _as_tuple(value: Any) -> Any:
    # YAML has no tuples: a [low, high] list becomes the tuple a strict model expects
    return tuple(value) if isinstance(value, list) else value


Pair = BeforeValidator(_as_tuple)
"""Annotate a ``tuple[...]`` field with this so that a YAML list is accepted in strict mode."""

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]

# Characters refused in every spec string: control characters (NUL, ESC, CR...; newline and tab
# only in multi-line free text), line/paragraph separators, lone surrogates, and the bidi
# overrides of "Trojan source" (text that displays differently from what it is).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
MULTILINE_FIELDS = frozenset({("description",)})


def bad_character(text: str, multiline: bool = False) -> str | None:
    """The first character of ``text`` a spec string may not hold, or None."""
    for ch in text:
        if multiline and ch in "\n\t":
            continue
        if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return ch
    return None


def describe_character(ch: str) -> str:
    name = {"\0": "NUL", "\n": "newline", "\r": "carriage return", "\t": "tab", "\x1b": "ESC"}
    return f"U+{ord(ch):04X}" + (f" ({name[ch]})" if ch in name else "")


def describe_value(value: Any) -> str:
    """A wrong-typed value as an error message shows it (with a hint for the usual slips)."""
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        try:
            float(value)
        except ValueError:
            return f"the text {shown!r}"
        return f"the text {shown!r} (a number in quotes: remove the quotes)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        hint = " (no decimal point or exponent in a whole number)" if value.is_integer() else ""
        return f"{value:g}{hint}"
    if value is None:
        return "null"
    return {list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


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
        raise ValueError(f"expected a whole number, got {describe_value(value)}")
    return value


def _check_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {describe_value(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
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
