"""Execution: plan execution, data preparation, the run store, results and launchers.

``runner.execute.results`` imports no torch (``advrun plan`` reads the
store); everything else here does, so the public names below are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Options", "Outcome", "execute_plan", "execute_run", "preflight"]

_WHERE = {
    "Options": "runner.execute.options",
    "Outcome": "runner.execute.launchers.serial",
    "execute_plan": "runner.execute.launchers.serial",
    "execute_run": "runner.execute.run",
    "preflight": "runner.execute.run",
}


def __getattr__(name: str) -> Any:  # PEP 562: heavy modules only when a name is used
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'runner.execute' has no attribute {name!r}")
