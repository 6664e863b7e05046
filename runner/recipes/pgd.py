"""``pgd``: Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks".

Each batch is replaced by its PGD adversarial examples (eps, step_size, steps, random start) and
the model is trained on them with their correct labels.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from runner.recipes.base import Recipe


class PGDRecipe(Recipe):
    adversarial = True

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        eps = self.eps_at(epoch_progress)
        step = self.cfg["step_size"] * (eps / self.cfg["eps"]) if self.cfg["eps"] else 0.0
        x_adv = self.perturb(model, x, y, eps, step, self.cfg["steps"], self.cfg["random_start"])
        return nn.functional.cross_entropy(model(x_adv), y)

    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int) -> float:
        """One epoch of ART's AdversarialTrainerMadryPGD (labels as indices: it one-hot encodes)."""
        from art.defences.trainer import AdversarialTrainerMadryPGD

        trainer = self.__dict__.get("_art_trainer")
        if trainer is None:  # one trainer (and one attack object) for the whole run
            trainer = self._art_trainer = AdversarialTrainerMadryPGD(
                classifier,
                nb_epochs=1,
                batch_size=self.cfg["batch_size"],
                eps=self.cfg["eps"],
                eps_step=self.cfg["step_size"],
                max_iter=self.cfg["steps"],
                num_random_init=1 if self.cfg["random_start"] else 0,
            )
        trainer.fit(x.cpu().numpy(), y.cpu().numpy().astype(np.int64))
        return float("nan")  # ART does not report the training loss
