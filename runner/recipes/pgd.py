"""``pgd``: Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks".

Each batch is replaced by its PGD adversarial examples (eps, step_size, steps, random start) and
the model is trained on them with their correct labels. With ``awp:`` the weights are perturbed
adversarially before each loss (AT-AWP, Wu, Xia & Wang 2020; :mod:`runner.recipes.weights`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.recipes.base import Batch, Recipe
from runner.spec.recipes import AWPSpec, IterativeRecipeBase, Problem, check_awp

if TYPE_CHECKING:
    from torch import Tensor, nn


class PGDRecipe(IterativeRecipeBase):
    """Madry et al. 2018: train on PGD examples."""

    kind: Literal["pgd"] = Field(description="Madry et al. 2018 PGD adversarial training")
    random_start: bool = Field(
        True, description="start each attack from a uniform random point in the ball"
    )
    awp: AWPSpec | None = Field(
        None,
        description="adversarial weight perturbation before each loss (AT-AWP, Wu, Xia & Wang "
        "2020; the paper uses gamma 0.01 with PGD); null: none",
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        yield from check_awp(self, self.awp, where)


class PGDTraining(Recipe):
    config = PGDRecipe
    art_trainer = "AdversarialTrainerMadryPGD"
    art_norms = ("linf",)
    adversarial = True

    def craft(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Batch:
        eps = self.eps_at(epoch_progress)
        start = "uniform" if self.cfg.random_start else "none"
        x_adv = self.perturb(model, x, y, eps, self.scaled("step_size", eps), self.cfg.steps, start)
        return Batch(x, y, epoch_progress, x_adv)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(model(batch.x_adv), batch.y)

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        return self.loss(model, self.craft(model, x, y, epoch_progress))

    def batch_hooks(self, model: nn.Module, steps_per_epoch: int) -> tuple[Any, ...]:
        from runner.recipes.weights import awp_hooks

        return (*awp_hooks(self, model), *super().batch_hooks(model, steps_per_epoch))

    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int, scheduler) -> float:
        """One epoch of ART's AdversarialTrainerMadryPGD (index labels: ART one-hot encodes them),
        or with ``awp`` of its AdversarialTrainerAWPPyTorch in PGD mode
        (:func:`runner.recipes.weights.art_awp_epoch`).

        ART's trainer calls the classifier's ``fit`` once per batch, which steps ``scheduler``.
        """
        import numpy as np
        from art.defences.trainer import AdversarialTrainerMadryPGD

        if self.cfg.awp is not None:
            from runner.recipes.weights import art_awp_epoch

            return art_awp_epoch(self, classifier, x, y, epoch, scheduler, "PGD")

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
