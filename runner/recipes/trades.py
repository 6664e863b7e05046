"""``trades``: Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy".

Inner maximisation: from x + 0.001 N(0, 1), projected steps that maximise KL(f(x) || f(x')),
with f(x) the (fixed) clean softmax. Outer loss: CE(f(x), y) + beta * KL(f(x) || f(x')) averaged
over the batch, gradients flowing through both the clean and the adversarial outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.recipes.base import Recipe, art_batches, one_hot
from runner.spec.base import FloatSweep
from runner.spec.recipes import IterativeRecipeBase, Problem, check_beta

if TYPE_CHECKING:
    from torch import Tensor, nn

_EPS = 1e-12


class TRADESRecipe(IterativeRecipeBase):
    """Zhang et al. 2019: CE(f(x), y) + beta * KL(f(x) || f(x')), x' maximising the KL."""

    kind: Literal["trades"] = Field(description="TRADES (Zhang et al. 2019)")
    beta: FloatSweep = Field(
        6.0, description="weight of the KL robustness term (0 to 1000; the paper uses 1 to 6)"
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        yield from check_beta(self.beta, where)


def kl_sum(logits_adv: Tensor, p_clean: Tensor) -> Tensor:
    """sum over the batch of KL(p_clean || softmax(logits_adv))."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(logits_adv, dim=1), p_clean, reduction="sum")


def trades_loss(logits: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> Tensor:
    """CE(f(x), y) + beta * mean KL(f(x) || f(x')), as in the paper's code and ART's trainer."""
    import torch.nn.functional as F

    kl = kl_sum(logits_adv, F.softmax(logits, dim=1).clamp_min(_EPS)) / len(y)
    return F.cross_entropy(logits, y) + beta * kl


class TRADESTraining(Recipe):
    config = TRADESRecipe
    art_trainer = "AdversarialTrainerTRADESPyTorch"
    adversarial = True

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        import torch
        import torch.nn.functional as F

        eps = self.eps_at(epoch_progress)
        model.eval()
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        x_adv = self.perturb(
            model,
            x,
            p_clean,
            eps,
            self.scaled("step_size", eps),
            self.cfg.steps,
            start="gaussian",
            loss_fn=kl_sum,
        )
        model.train()
        return trades_loss(model(x), model(x_adv), y, self.cfg.beta)

    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int, scheduler) -> float:
        """One epoch of ART's AdversarialTrainerTRADESPyTorch, batch by batch.

        ART's TRADES trainer takes any evasion attack for the inner step; advrun gives it ART's
        PGD (cross-entropy, from x itself) with the recipe's eps, step_size and steps. Its ``fit``
        steps a scheduler once per epoch (and only a legacy ``_LRScheduler``), so advrun drives
        its per-batch step ``_batch_process`` with the spec's per-batch schedule.
        """
        import numpy as np
        from art.attacks.evasion import ProjectedGradientDescent
        from art.defences.trainer import AdversarialTrainerTRADESPyTorch

        trainer = self.__dict__.get("_art_trainer")
        if trainer is None:
            attack = ProjectedGradientDescent(
                classifier,
                norm=np.inf if self.norm == "linf" else 2,
                eps=self.cfg.eps,
                eps_step=self.cfg.step_size,
                max_iter=self.cfg.steps,
                num_random_init=0,
                batch_size=self.cfg.batch_size,
                verbose=False,
            )
            trainer = self._art_trainer = AdversarialTrainerTRADESPyTorch(
                classifier, attack, beta=self.cfg.beta
            )
        xs, ys = x.cpu().numpy(), one_hot(y, self.ctx.num_classes)
        loss_sum, n = 0.0, 0
        for idx in art_batches(len(xs), self.cfg.batch_size):
            batch_loss, _, count = trainer._batch_process(xs[idx], ys[idx])  # noqa: SLF001
            loss_sum, n = loss_sum + batch_loss, n + count
            scheduler.step()
        return loss_sum / max(1, n)
