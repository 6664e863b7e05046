"""The spec: pydantic models of an advrun experiment, and the loader that validates YAML."""

from runner.spec.attacks import ATTACK_SPECS, AttackBase
from runner.spec.core import DataSpec, EvalSpec, ModelSpec, Spec, ThreatSpec
from runner.spec.load import LoadedSpec, load_spec, validate_data
from runner.spec.recipes import RECIPE_SPECS, RecipeBase

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
