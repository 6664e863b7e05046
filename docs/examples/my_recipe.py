"""A recipe plug-in in one file: curriculum PGD training (after Cai et al. 2018, "Curriculum
Adversarial Training").

PGD adversarial training whose attack grows stronger during training: the number of PGD steps
rises linearly from ``min_steps`` in the first epoch to ``steps`` in the last. Register it with
one line (in ``runner/catalog/recipes.py``, or at run time as the test does):

    RECIPES.register("curriculum_pgd", "my_recipe:CurriculumPGDTraining", "curriculum PGD")

and use it in a spec: ``recipes: [{name: cur, kind: curriculum_pgd, steps: 7, min_steps: 1}]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.recipes.base import Recipe
from runner.spec.recipes import IterativeRecipeBase, Problem, as_list

if TYPE_CHECKING:  # no torch at import: `advrun validate` loads this file for its spec model
    from torch import Tensor, nn


class CurriculumPGDRecipe(IterativeRecipeBase):
    """Curriculum PGD training: the attack's step count grows from min_steps to steps."""

    kind: Literal["curriculum_pgd"] = Field(description="PGD training with a growing attack")
    min_steps: int = Field(1, ge=1, le=1000, description="PGD steps in the first epoch")

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        """Its own cross-field rule (the shared ones, eps and step sizes, run before it)."""
        for steps in as_list(self.steps):
            if self.min_steps > steps:
                yield (
                    (*where, "min_steps"),
                    f"min_steps {self.min_steps} is more than steps {steps}: the curriculum "
                    "grows the attack from min_steps to steps",
                )


class CurriculumPGDTraining(Recipe):
    """The training side: one batch loss; the shared loop does the rest."""

    config = CurriculumPGDRecipe
    adversarial = True  # crafts perturbations: eps and step sizes are resolved for it

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        import torch.nn.functional as F

        cfg = self.cfg
        eps = self.eps_at(epoch_progress)
        grown = min(1.0, epoch_progress / max(1, cfg.epochs - 1))
        steps = cfg.min_steps + round(grown * (cfg.steps - cfg.min_steps))
        # perturb: projected steps in eval mode, gradients w.r.t. the input only
        x_adv = self.perturb(model, x, y, eps, self.scaled("step_size", eps), steps)
        return F.cross_entropy(model(x_adv), y)
