"""MLflow's limits on names and values, applied to advrun's user-given names (pure).

MLflow accepts param, metric and tag keys of at most 250 characters made of letters, digits,
``_ - . /`` and spaces (colons too, except on Windows servers), that do not normalise to another
path (``a//b``, ``../x``, ``/x``); param values of at most 6000 characters and tag values of at most
8000. Attack and model names are user text, so every key is made to fit: a key that had to change
gets a short hash of the original, so two different names never land on the same key.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def key(name: str) -> str:
    """A valid MLflow key for ``name``: unchanged when it already is one."""
    text = str(name)
    safe = _BAD.sub("_", text)
    parts = [p for p in safe.split("/") if p not in ("", ".", "..")]
    safe = "/".join(p.strip() or "_" for p in parts) or "_"
    if safe == text and len(safe) <= MAX_KEY:
        return safe
    tail = f"-{_digest(text)}"
    return safe[: MAX_KEY - len(tail)] + tail


def value(v: Any, limit: int = MAX_PARAM_VALUE) -> str:
    """A param/tag value as text (JSON for non-strings), cut to ``limit`` with a hash of the rest."""
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    if len(text) <= limit:
        return text
    tail = f"...[truncated; sha256 {_digest(text, 16)}]"
    return text[: limit - len(tail)] + tail


def number(v: Any) -> float | None:
    """A finite float, or None (MLflow stores NaN badly across backends; empty cells are None)."""
    if v is None or isinstance(v, bool) or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def flatten(prefix: str, obj: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"prefix.a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
    else:
        out[prefix] = obj
    return out
