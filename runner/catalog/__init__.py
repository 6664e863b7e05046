"""What exists: every dataset, model, recipe, attack and poisoning defense, by name (pure; imports no torch).

Implementations are named as ``"module:attr"`` strings and imported only when a run executes.
"""

from runner.catalog.attacks import ATTACKS
from runner.catalog.data import DATASETS, MODELS
from runner.catalog.defenses import DEFENSES
from runner.catalog.recipes import RECIPES

__all__ = ["ATTACKS", "DATASETS", "DEFENSES", "MODELS", "RECIPES"]
