"""``pgd``: Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks".

Each batch is replaced by its PGD adversarial examples (eps, step_size, steps, random start) and
the model is trained on them with their correct labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from runner.recipes.base import Recipe
from runner.spec.recipes import IterativeRecipeBase

if TYPE_CHECKING:
    from torch import Tensor, nn


class PGDRecipe(IterativeRecipeBase):
    """Madry et al. 2018: train on PGD examples."""

    kind: Literal["pgd"] = Field(description="Madry et al. 2018 PGD adversarial training")
    random_start: bool = Field(
        True, description="start each attack from a uniform random point in the ball"
    )


class PGDTraining(Recipe):
    config = PGDRecipe
    art_trainer = "AdversarialTrainerMadryPGD"
    art_norms = ("linf",)
    adversarial = True

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        import torch.nn.functional as F

        eps = self.eps_at(epoch_progress)
        start = "uniform" if self.cfg.random_start else "none"
        x_adv = self.perturb(model, x, y, eps, self.scaled("step_size", eps), self.cfg.steps, start)
        return F.cross_entropy(model(x_adv), y)

    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int, scheduler) -> float:
        """One epoch of ART's AdversarialTrainerMadryPGD (index labels: ART one-hot encodes them).

        ART's trainer calls the classifier's ``fit`` once per batch, which steps ``scheduler``.
        """
        import numpy as np
        from art.defences.trainer import AdversarialTrainerMadryPGD

        trainer = self.__dict__.get("_art_trainer")
        if trainer is None:  # one trainer (and one attack object) for the whole run
            trainer = self._art_trainer = AdversarialTrainerMadryPGD(
                classifier,
                nb_epochs=1,
                batch_size=self.cfg.batch_size,
                eps=self.cfg.eps,
                eps_step=self.cfg.step_size,
                max_iter=self.cfg.steps,
                num_random_init=1 if self.cfg.random_start else 0,
            )
            trainer.attack.set_params(verbose=False)
        trainer.fit(x.cpu().numpy(), y.cpu().numpy().astype(np.int64), scheduler=scheduler)
        return float("nan")  # ART does not report the training loss
