"""``mart``: Wang et al. 2020, "Improving Adversarial Robustness Requires Revisiting Misclassified Examples".

Inner maximisation: PGD on cross-entropy from x + 0.001 N(0, 1). Outer loss (the paper's eq. 9):

    BCE(p(x'), y) + beta * KL(p(x) || p(x')) * (1 - p_y(x))

with BCE(p, y) = -log p_y - log(1 - max_{k != y} p_k), the boosted cross-entropy that also
pushes down the most likely wrong class, and the KL term weighted up on examples the model
misclassifies (small p_y(x)). ART has no MART trainer; tests check this loss against the
formula computed independently.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.recipes.base import Recipe
from runner.spec.base import FloatSweep
from runner.spec.recipes import IterativeRecipeBase, Problem, check_beta

if TYPE_CHECKING:
    from torch import Tensor, nn

_EPS = 1e-12


class MARTRecipe(IterativeRecipeBase):
    """Wang et al. 2020: boosted CE on x' + beta * KL(f(x) || f(x')) * (1 - p_y(x))."""

    kind: Literal["mart"] = Field(description="MART, misclassification-aware (Wang et al. 2020)")
    beta: FloatSweep = Field(
        6.0,
        description="weight of the misclassification-aware KL term (0 to 1000; the paper uses 6)",
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        yield from check_beta(self.beta, where)


def mart_loss(logits: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> Tensor:
    """The MART objective, batch mean, with the numerical guards of the authors' code."""
    import torch
    import torch.nn.functional as F

    p_adv = F.softmax(logits_adv, dim=1)
    top2 = p_adv.topk(2, dim=1).indices
    wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])  # most likely other class
    bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + _EPS), wrong)
    p_clean = F.softmax(logits, dim=1)
    kl = F.kl_div(torch.log(p_adv + _EPS), p_clean, reduction="none").sum(1)
    p_true = p_clean.gather(1, y[:, None]).squeeze(1)
    return bce + beta * (kl * (1.0000001 - p_true)).mean()


class MARTTraining(Recipe):
    config = MARTRecipe
    adversarial = True

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        eps = self.eps_at(epoch_progress)
        x_adv = self.perturb(
            model, x, y, eps, self.scaled("step_size", eps), self.cfg.steps, start="gaussian"
        )
        return mart_loss(model(x), model(x_adv), y, self.cfg.beta)
