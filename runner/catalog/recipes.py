"""Registered training recipes (pure; imports no torch)."""

from __future__ import annotations

from runner.registry import Registry

RECIPES = Registry("recipe kind")
# meta: art = name of ART's trainer for engine: art, or None
RECIPES.register("standard", "runner.recipes.standard:StandardRecipe", "clean training", art=None)
RECIPES.register(
    "fgsm_augment",
    "runner.recipes.fgsm_augment:FGSMAugmentRecipe",
    "Goodfellow et al. 2015 FGSM data augmentation",
    art="AdversarialTrainer",
)
RECIPES.register(
    "pgd",
    "runner.recipes.pgd:PGDRecipe",
    "Madry et al. 2018 PGD adversarial training",
    art="AdversarialTrainerMadryPGD",
)
RECIPES.register(
    "fgsm_rs",
    "runner.recipes.fgsm_rs:FGSMRSRecipe",
    "Wong, Rice & Kolter 2020 FGSM from a random start, with a catastrophic-overfitting guard",
    art="AdversarialTrainerFBFPyTorch",
)
RECIPES.register(
    "trades",
    "runner.recipes.trades:TRADESRecipe",
    "Zhang et al. 2019 TRADES",
    art="AdversarialTrainerTRADESPyTorch",
)
RECIPES.register("mart", "runner.recipes.mart:MARTRecipe", "Wang et al. 2020 MART", art=None)
RECIPES.register(
    "backdoor_mitigation",
    "runner.recipes.backdoor_mitigation:BackdoorMitigationRecipe",
    "trigger-stamped training copies with correct labels",
    art=None,
)
