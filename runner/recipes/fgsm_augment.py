"""``fgsm_augment``: Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing Adversarial Examples".

In each batch a share ``ratio`` of the examples is replaced by FGSM examples crafted against the
current model (one signed-gradient step of size eps, no random start), kept with their correct
labels: the model trains on clean and adversarial examples together. This is ART's
``AdversarialTrainer(classifier, FastGradientMethod, ratio)``. At ``ratio: 1`` and a large eps it
is plain FGSM training, which can overfit catastrophically; the single-step recipes' guard
(``overfit_drop``) watches it, off by default here (Goodfellow et al.'s recipe keeps clean
examples in every batch, and existing specs may run without validation).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.recipes.base import GuardedRecipe
from runner.spec.base import FloatSweep
from runner.spec.recipes import Problem, SingleStepRecipeBase, as_list

if TYPE_CHECKING:
    from torch import Tensor, nn


class FGSMAugmentRecipe(SingleStepRecipeBase):
    """Goodfellow et al. 2015: replace a share of each batch by FGSM examples, correct labels."""

    kind: Literal["fgsm_augment"] = Field(
        description="FGSM data augmentation (ART's AdversarialTrainer)"
    )
    ratio: FloatSweep = Field(
        0.5,
        description="share of each batch replaced by its FGSM examples, in (0, 1]; a list sweeps",
    )
    overfit_drop: float | None = Field(
        None,
        gt=0,
        le=1,
        description="catastrophic-overfitting guard: stop and restore the best epoch when "
        "validation PGD accuracy falls this far below its best (null, the default here: off; "
        "0.2 as the other single-step recipes; needs validation on)",
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        yield from super().check(where, spec)
        for r in as_list(self.ratio):
            if not 0 < r <= 1:
                yield (
                    (*where, "ratio"),
                    (
                        f"ratio {r:g} must be in (0, 1]: the share of each batch replaced by FGSM "
                        "examples (1 trains on FGSM examples only)"
                    ),
                )


class FGSMAugmentTraining(GuardedRecipe):
    config = FGSMAugmentRecipe
    art_trainer = "AdversarialTrainer"
    adversarial = True

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        import torch
        import torch.nn.functional as F

        eps = self.eps_at(epoch_progress)
        # the batch is already a random draw, so its first n_adv examples are a random subset
        n_adv = math.ceil(self.cfg.ratio * len(x))
        x_adv = self.perturb(model, x[:n_adv], y[:n_adv], eps, eps, 1, start="none")
        if n_adv < len(x):
            x_adv = torch.cat([x_adv, x[n_adv:]])
        return F.cross_entropy(model(x_adv), y)

    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int, scheduler) -> float:
        """One epoch of ART's AdversarialTrainer with FastGradientMethod (index labels)."""
        import numpy as np
        from art.attacks.evasion import FastGradientMethod
        from art.defences.trainer import AdversarialTrainer

        trainer = self.__dict__.get("_art_trainer")
        if trainer is None:
            attack = FastGradientMethod(
                classifier,
                norm=np.inf if self.norm == "linf" else 2,
                eps=self.cfg.eps,
                batch_size=self.cfg.batch_size,
            )
            trainer = self._art_trainer = AdversarialTrainer(
                classifier, attack, ratio=self.cfg.ratio
            )
        trainer.fit(
            x.cpu().numpy(),
            y.cpu().numpy().astype(np.int64),
            batch_size=self.cfg.batch_size,
            nb_epochs=1,
            scheduler=scheduler,
        )
        return float("nan")
