"""The spec: pydantic models of an advrun experiment, and the loader that validates YAML.

Names are resolved on first use (PEP 562), so that a plug-in importing a base module such as
:mod:`runner.spec.attacks` does not import the root model, which loads every plug-in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.spec.attacks import ATTACK_SPECS, AttackBase
    from runner.spec.core import DataSpec, EvalSpec, ModelSpec, Spec, ThreatSpec
    from runner.spec.load import LoadedSpec, load_spec, validate_data
    from runner.spec.recipes import RECIPE_SPECS, RecipeBase

_WHERE = {
    "ATTACK_SPECS": "attacks",
    "AttackBase": "attacks",
    "DataSpec": "core",
    "EvalSpec": "core",
    "ModelSpec": "core",
    "Spec": "core",
    "ThreatSpec": "core",
    "LoadedSpec": "load",
    "load_spec": "load",
    "validate_data": "load",
    "RECIPE_SPECS": "recipes",
    "RecipeBase": "recipes",
}

__all__ = [
    "ATTACK_SPECS",
    "RECIPE_SPECS",
    "AttackBase",
    "DataSpec",
    "EvalSpec",
    "LoadedSpec",
    "ModelSpec",
    "RecipeBase",
    "Spec",
    "ThreatSpec",
    "load_spec",
    "validate_data",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'runner.spec' has no attribute '{name}'")
    return getattr(importlib.import_module(f"runner.spec.{_WHERE[name]}"), name)
