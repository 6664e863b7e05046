"""Registered training recipes (pure; imports no torch)."""

from __future__ import annotations

from runner.registry import Registry

RECIPES = Registry("recipe kind")
# meta: art = name of ART's trainer for engine: art, or None
RECIPES.register("standard", "runner.recipes.standard:StandardRecipe", "clean training", art=None)
RECIPES.register(
    "pgd",
    "runner.recipes.pgd:PGDRecipe",
    "Madry et al. 2018 PGD adversarial training",
    art="AdversarialTrainerMadryPGD",
)
