"""Number expressions in specs: ``0.1``, ``8/255``, ``eps/4``, ``1.25*eps``, ``2*eps/255``.

Parsed with :mod:`ast` and walked by hand: only numbers, the name ``eps`` and the operators
``* / + -`` are accepted; nothing is ever evaluated as Python.
"""

from __future__ import annotations

import ast
import math

Number = float | int | str

_OPS = {
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
}


class ExprError(ValueError):
    pass


def _walk(node: ast.AST, eps: float | None, text: str) -> float:
    if isinstance(node, ast.Expression):
        return _walk(node.body, eps, text)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id == "eps":
        if eps is None:
            raise ExprError(f"'{text}' refers to eps, but no eps is defined here")
        return float(eps)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _walk(node.operand, eps, text)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b = _walk(node.left, eps, text), _walk(node.right, eps, text)
        if isinstance(node.op, ast.Div) and b == 0:
            raise ExprError(f"'{text}' divides by zero")
        return _OPS[type(node.op)](a, b)
    raise ExprError(
        f"'{text}' is not a number expression: use a number, a fraction like 8/255, "
        "or an expression of eps like eps/4 or 1.25*eps"
    )


def check(value: Number) -> Number:
    """Validate syntax only (eps may not be known yet); return the value unchanged."""
    if isinstance(value, bool):
        raise ExprError("expected a number, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ExprError(f"{value} is not a finite number")
        return value
    if not isinstance(value, str) or len(value) > 100:
        raise ExprError("expected a number or an expression like 8/255 or eps/4")
    try:
        tree = ast.parse(value.strip(), mode="eval")
    except SyntaxError:
        raise ExprError(
            f"'{value}' is not a number expression: use a number, a fraction like 8/255, "
            "or an expression of eps like eps/4"
        ) from None
    _finite(_walk(tree, 1.0, value), value)  # syntax and vocabulary only
    return value


def _finite(v: float, text: Number) -> float:
    if not math.isfinite(v):
        raise ExprError(f"'{text}' is not a finite number (too large)")
    return v


def evaluate(value: Number, eps: float | None = None) -> float:
    """The value of an expression; ``eps`` is the enclosing threat or recipe eps."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    check(value)
    return _finite(_walk(ast.parse(str(value).strip(), mode="eval"), eps, str(value)), value)


def uses_eps(value: Number) -> bool:
    if not isinstance(value, str):
        return False
    return any(isinstance(n, ast.Name) for n in ast.walk(ast.parse(value.strip(), mode="eval")))
