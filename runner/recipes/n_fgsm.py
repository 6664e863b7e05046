"""``n_fgsm``: de Jorge et al. 2022, "Make Some Noise: Reliable and Efficient Single-Step
Adversarial Training" (NeurIPS 2022, arXiv:2202.01181).

From x + eta, eta uniform in [-k, k] per pixel (``noise``, k = 2*eps by default), one signed
gradient step of size ``alpha`` (eps by default), and the training step on that point. The
perturbation is *not* clipped back into the eps ball (``clip: null``, the paper's default): its
size reaches k + alpha = 3*eps, on purpose; the noise is what avoids catastrophic overfitting
without GradAlign's double backpropagation. Only the pixel range bounds it (the authors' code
clamps x + eta and x + delta to [0, 1] too). ``clip`` restores a projection into a ball of that
radius. The learning rate is cyclic with its peak at half of training by default, as the code's
CIFAR runs. The catastrophic-overfitting guard of the single-step recipes watches it. The attack
runs in eval mode, as every advrun inner attack (the authors' code keeps train mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from runner import expr
from runner.recipes.base import Batch, GuardedRecipe, attack_mode
from runner.spec.base import Expr
from runner.spec.recipes import Problem, ScheduleSpec, SingleStepRecipeBase

if TYPE_CHECKING:
    from torch import Tensor, nn


class NFGSMRecipe(SingleStepRecipeBase):
    """de Jorge et al. 2022: FGSM from a noise of 2*eps, without clipping to the eps ball."""

    eps_relative: ClassVar[tuple[str, ...]] = ("noise", "alpha", "clip")
    kind: Literal["n_fgsm"] = Field(description="N-FGSM, FGSM from a large noise (de Jorge 2022)")
    noise: Expr = Field(
        "2*eps",
        description="k: the uniform noise's half-width per pixel (L-inf) or radius (L2); 'eps' is "
        "this recipe's eps (the paper: 2*eps)",
    )
    alpha: Expr = Field(
        "eps", description="the signed gradient step from the noisy point (the paper: eps)"
    )
    clip: Expr | None = Field(
        None,
        description="project the perturbation into a ball of this radius (e.g. eps); null: no "
        "clipping, the paper's default",
    )
    schedule: ScheduleSpec = Field(
        default_factory=lambda: ScheduleSpec(name="cyclic", peak=0.5),
        description="learning-rate schedule (default cyclic peaking at half of training, as the "
        "authors' CIFAR runs)",
    )

    def check_at_eps(self, eps: float, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        noise, alpha = expr.evaluate(self.noise, eps), expr.evaluate(self.alpha, eps)
        if not 0 <= noise <= 4 * eps:
            yield (
                (*where, "noise"),
                f"noise {noise:g} must be in [0, 4*eps] = [0, {4 * eps:g}] (the paper: 2*eps)",
            )
        if not 0 < alpha <= 2 * eps:
            yield (
                (*where, "alpha"),
                f"alpha {alpha:g} must be in (0, 2*eps] = (0, {2 * eps:g}] (the paper: eps)",
            )
        if self.clip is not None and not expr.evaluate(self.clip, eps) > 0:
            yield (*where, "clip"), "clip must be positive (a radius), or null for no clipping"


class NFGSMTraining(GuardedRecipe):
    config = NFGSMRecipe
    adversarial = True

    def craft(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Batch:
        return Batch(x, y, epoch_progress, self.noisy_fgsm(model, x, y, epoch_progress))

    def noisy_fgsm(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        """x + eta + alpha * sign(grad at x + eta), in the pixel range (and the clip ball)."""
        import torch

        from runner.attacks import native
        from runner.recipes.base import ce_sum

        eps = self.eps_at(epoch_progress)
        k, alpha = self.scaled("noise", eps), self.scaled("alpha", eps)
        x = x.detach()
        if eps <= 0:
            return x
        # eta: uniform in the k-ball of the norm (k = 2*eps: twice the threat's ball), x + eta
        # in the pixel range
        if k > 0:
            eta = native.random_start(x, k, self.norm, self.lo, self.hi)
        else:
            eta = torch.zeros_like(x)
        with attack_mode(model):
            eta.requires_grad_(True)
            (grad,) = torch.autograd.grad(ce_sum(model(x + eta), y), eta)
        with torch.no_grad():
            if self.norm == "linf":
                step = grad.sign()
            else:
                step = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(
                    -1, *[1] * (x.dim() - 1)
                )
            delta = eta.detach() + alpha * step
            radius = self.scaled("clip", eps) if self.cfg.clip is not None else float("inf")
            if self.norm == "linf":
                delta = delta.clamp(-radius, radius)
            elif radius < float("inf"):
                size = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
                delta = delta * (radius / size).clamp(max=1.0).view(-1, *[1] * (x.dim() - 1))
            return (x + delta).clamp(self.lo, self.hi)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(model(batch.x_adv), batch.y)

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        return self.loss(model, self.craft(model, x, y, epoch_progress))
