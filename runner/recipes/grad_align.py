"""``grad_align``: Andriushchenko & Flammarion 2020, "Understanding and Improving Fast Adversarial
Training" (NeurIPS 2020, arXiv:2007.02617).

FGSM training (a step of ``alpha`` from x itself, projected into the eps ball; ``random_start``
starts from a uniform point instead) plus the gradient-alignment regulariser

    lambda * (1 - mean_i cos(grad_x l(x_i + delta0_i), grad_x l(x_i + eta_i))),

eta uniform in the eps ball, the second gradient taken with ``create_graph`` so that the
regulariser is trained through (double backpropagation). As the authors' code
(tml-epfl/understanding-fast-adv-training, ``grad_align_cos_lambda``): the first gradient is the
FGSM step's own (at x for the zero start; no extra pass), examples where either gradient is zero
are left out of the mean, and lambda 0.2 goes with eps 8/255 on CIFAR-10 (larger eps need a larger
lambda). Both gradients are taken in eval mode, as every advrun inner attack (the code keeps train
mode; the two agree for models without batch norm or dropout), with the point x + eta kept in the
pixel range. The learning rate is cyclic by default; the catastrophic-overfitting guard of the
single-step recipes watches the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from runner import expr
from runner.recipes.base import Batch, GuardedRecipe, attack_mode, ce_sum
from runner.spec.base import Expr, FloatSweep
from runner.spec.recipes import Problem, ScheduleSpec, SingleStepRecipeBase, as_list

if TYPE_CHECKING:
    from torch import Tensor, nn


class GradAlignRecipe(SingleStepRecipeBase):
    """Andriushchenko & Flammarion 2020: FGSM + lambda * (1 - cos of input gradients)."""

    # ``lambda`` is a Python keyword: the field is lambda_, its key in specs and files "lambda"
    model_config = ConfigDict(serialize_by_alias=True, validate_by_alias=True)
    eps_relative: ClassVar[tuple[str, ...]] = ("alpha",)

    kind: Literal["grad_align"] = Field(
        description="FGSM with the gradient-alignment regulariser (GradAlign)"
    )
    lambda_: FloatSweep = Field(
        0.2,
        alias="lambda",
        description="weight of the regulariser, >= 0 (the paper: 0.2 at eps 8/255 on CIFAR-10, "
        "more at larger eps); a list sweeps",
    )
    alpha: Expr = Field(
        "eps",
        description="FGSM step; 'eps' is this recipe's eps (from x itself any step >= eps lands "
        "on the same corner)",
    )
    random_start: bool = Field(
        False,
        description="start the FGSM step from a uniform point in the ball (the paper's GradAlign "
        "runs start from x: --attack_init=zero)",
    )
    schedule: ScheduleSpec = Field(
        default_factory=lambda: ScheduleSpec(name="cyclic"),
        description="learning-rate schedule (default cyclic, as the authors' code)",
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        yield from super().check(where, spec)
        for lam in as_list(self.lambda_):
            if not 0 <= lam <= 100:
                yield (
                    (*where, "lambda"),
                    f"lambda {lam:g} must be in [0, 100] (the paper: 0.2 at eps 8/255; 0 is plain "
                    "FGSM training)",
                )

    def check_at_eps(self, eps: float, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        alpha = expr.evaluate(self.alpha, eps)
        if not 0 < alpha <= 2 * eps:
            yield (
                (*where, "alpha"),
                f"alpha {alpha:g} must be in (0, 2*eps] = (0, {2 * eps:g}] (the paper: eps)",
            )


def alignment(g1: Tensor, g2: Tensor) -> Tensor:
    """mean over the examples of cos(g1_i, g2_i), leaving out those where either is zero (as the
    authors' code); 1 when none is left. No device sync."""
    import torch

    a, b = g1.flatten(1), g2.flatten(1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    keep = (na != 0) & (nb != 0)
    cos = (a * b).sum(1) / (na * nb).clamp_min(torch.finfo(a.dtype).tiny)
    kept = keep.sum()
    mean = torch.where(keep, cos, torch.zeros_like(cos)).sum() / kept.clamp_min(1)
    return torch.where(kept > 0, mean, torch.ones_like(mean))


class GradAlignTraining(GuardedRecipe):
    config = GradAlignRecipe
    adversarial = True

    def craft(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Batch:
        """FGSM from x (or a random start); keeps the step's input gradient for the regulariser."""
        import torch

        from runner.attacks import native

        eps = self.eps_at(epoch_progress)
        x = x.detach()
        if self.cfg.random_start and eps > 0:
            delta = native.random_start(x, eps, self.norm, self.lo, self.hi)
        else:
            delta = torch.zeros_like(x)
        with attack_mode(model):
            delta.requires_grad_(True)
            (grad,) = torch.autograd.grad(ce_sum(model(x + delta), y), delta)
        with torch.no_grad():
            step = self.scaled("alpha", eps) * _direction(grad, self.norm)
            x_adv = x + native.project(x, delta.detach() + step, eps, self.norm, self.lo, self.hi)
        return Batch(x, y, epoch_progress, x_adv, grad=grad)

    def regulariser(self, model: nn.Module, batch: Batch) -> Tensor:
        """lambda * (1 - alignment of the FGSM gradient with the gradient at x + eta), the second
        with its graph (double backpropagation), in eval mode."""
        import torch

        from runner.attacks import native

        lam = float(self.cfg.lambda_)
        eps = self.eps_at(batch.progress)
        if lam == 0 or eps <= 0 or batch.grad is None:
            return torch.zeros((), device=batch.x.device)
        x = batch.x.detach()
        eta = native.random_start(x, eps, self.norm, self.lo, self.hi).requires_grad_(True)
        was = model.training
        model.eval()
        try:
            (g2,) = torch.autograd.grad(ce_sum(model(x + eta), batch.y), eta, create_graph=True)
        finally:
            model.train(was)
        return lam * (1.0 - alignment(batch.grad, g2))

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        import torch.nn.functional as F

        reg = self.regulariser(model, batch)
        return F.cross_entropy(model(batch.x_adv), batch.y) + reg

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        return self.loss(model, self.craft(model, x, y, epoch_progress))


def _direction(grad: Tensor, norm: str) -> Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
