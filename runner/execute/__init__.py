"""Execution: the per-run step, the launchers that decide where runs execute, data preparation
and the experiment's results.

``runner.execute.results`` imports no torch (``advrun plan`` reads the
store); everything else here does, so the public names below are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Options", "Outcome", "execute_run", "preflight"]

_WHERE = {
    "Options": "runner.execute.options",
    "Outcome": "runner.execute.step",
    "execute_run": "runner.execute.run",
    "preflight": "runner.execute.run",
}


def __getattr__(name: str) -> Any:  # PEP 562: heavy modules only when a name is used
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'runner.execute' has no attribute {name!r}")
