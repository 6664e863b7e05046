"""Training recipes: one line per plug-in, naming its class as "module:attr" (pure; imports nothing).

Each class (a :class:`runner.recipes.base.Recipe`) names its spec model (``config``, defined in
the same file) and ART's trainer behind ``engine: art``; see ``docs/examples/README.md``.
"""

from __future__ import annotations

from runner.registry import Registry

RECIPES = Registry("recipe kind")
# fmt: off
RECIPES.register("standard", "runner.recipes.standard:StandardTraining", "clean training")
RECIPES.register("fgsm_augment", "runner.recipes.fgsm_augment:FGSMAugmentTraining", "Goodfellow et al. 2015 FGSM data augmentation")
RECIPES.register("pgd", "runner.recipes.pgd:PGDTraining", "Madry et al. 2018 PGD adversarial training")
RECIPES.register(
    "fgsm_rs", "runner.recipes.fgsm_rs:FGSMRSTraining",
    "Wong, Rice & Kolter 2020 FGSM from a random start, with a catastrophic-overfitting guard",
)
RECIPES.register("trades", "runner.recipes.trades:TRADESTraining", "Zhang et al. 2019 TRADES")
RECIPES.register("mart", "runner.recipes.mart:MARTTraining", "Wang et al. 2020 MART")
RECIPES.register(
    "backdoor_mitigation", "runner.recipes.backdoor_mitigation:BackdoorMitigationTraining",
    "trigger-stamped training copies with correct labels",
)
RECIPES.register("gaussian_augment", "runner.recipes.gaussian_augment:GaussianAugmentTraining", "Cohen et al. 2019 Gaussian data augmentation (randomized smoothing)")
RECIPES.register("smooth_adv", "runner.recipes.smooth_adv:SmoothAdvTraining", "Salman et al. 2019 SmoothAdv: PGD against the smoothed classifier")
# fmt: on
