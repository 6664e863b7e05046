"""``smooth_adv``: Salman et al. 2019, "Provably Robust Deep Learning via Adversarially Trained
Smoothed Classifiers" (SmoothAdv_PGD; their code: github.com/Hadisalman/smoothing-adversarial).

Each example is copied ``samples`` (m) times with fresh noise e_1..e_m ~ N(0, sigma^2 I). L2 PGD
(from zero, ``steps`` steps of ``step_size``, default 2 eps / steps) maximises the cross-entropy of
the *smoothed soft classifier*, -log((1/m) sum_i softmax(f(x + delta + e_i))_y), over one delta per
example with ||delta||_2 <= eps and x + delta in the pixel range; the model is then trained on the
m noisy copies x + delta + e_i (the same noise) with the correct label. The attack is L2 whatever
the threat norm: randomized smoothing certifies L2 radii. eps may warm up over
``eps_warmup_epochs`` as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.recipes.base import Recipe, attack_mode
from runner.recipes.gaussian_augment import check_sigma
from runner.spec.base import MAX_EPOCHS, FloatSweep, IntSweep
from runner.spec.recipes import MAX_TRAIN_STEPS, Problem, RecipeBase, as_list

if TYPE_CHECKING:
    from torch import Tensor, nn

MAX_NOISE_SAMPLES = 64


class SmoothAdvRecipe(RecipeBase):
    """Salman et al. 2019: PGD against the smoothed soft classifier (SmoothAdv_PGD)."""

    kind: Literal["smooth_adv"] = Field(
        description="Salman et al. 2019 SmoothAdv: adversarial training of smoothed classifiers"
    )
    sigma: FloatSweep = Field(
        ..., description="standard deviation of the noise in pixel units; a list sweeps"
    )
    eps: FloatSweep = Field(
        ...,
        description="L2 radius of the attack in pixel units (the paper: 0.25 to 2.0 on [0, 1] "
        "images); a list sweeps",
    )
    steps: IntSweep = Field(
        10, description=f"PGD steps per batch (1 to {MAX_TRAIN_STEPS}); a list sweeps"
    )
    step_size: FloatSweep | None = Field(
        None, description="L2 step size in pixel units (default 2 eps / steps); a list sweeps"
    )
    samples: IntSweep = Field(
        1,
        description=f"noise samples m per example (1 to {MAX_NOISE_SAMPLES}; the paper: 1, 2, 4, "
        "8); the batch trains on m noisy copies of each example; a list sweeps",
    )
    eps_warmup_epochs: int = Field(
        0, ge=0, le=MAX_EPOCHS, description="ramp eps linearly from 0 over this many epochs"
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        yield from check_sigma(self.sigma, where, spec)
        for e in as_list(self.eps):
            if e <= 0:
                yield (*where, "eps"), f"eps {e:g} must be > 0 (the attack's L2 radius)"
        for s in as_list(self.steps):
            if not 1 <= s <= MAX_TRAIN_STEPS:
                yield (*where, "steps"), f"steps {s} must be in 1..{MAX_TRAIN_STEPS}"
        for m in as_list(self.samples):
            if not 1 <= m <= MAX_NOISE_SAMPLES:
                yield (*where, "samples"), f"samples {m} must be in 1..{MAX_NOISE_SAMPLES}"
        for z in as_list(self.step_size) if self.step_size is not None else []:
            if z <= 0:
                yield (*where, "step_size"), f"step_size {z:g} must be > 0"


class SmoothAdvTraining(Recipe):
    config = SmoothAdvRecipe
    adversarial = True

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        import torch
        import torch.nn.functional as F

        m, sigma = int(self.cfg.samples), float(self.cfg.sigma)
        noise = torch.randn((len(x) * m, *x.shape[1:]), device=x.device, dtype=x.dtype) * sigma
        eps = self.eps_at(epoch_progress)
        x_adv = self.smooth_pgd(model, x, y, noise, eps)
        return F.cross_entropy(model(x_adv.repeat_interleave(m, 0) + noise), y.repeat_interleave(m))

    def smooth_pgd(
        self, model: nn.Module, x: Tensor, y: Tensor, noise: Tensor, eps: float
    ) -> Tensor:
        """SmoothAdv_PGD: L2 PGD from zero on -log of the mean softmax over the m noisy copies
        (``noise``: [len(x) * m, ...], example-major); steps normalised per example (a zero
        gradient steps in a random direction, as in Salman et al.'s code)."""
        import torch
        import torch.nn.functional as F

        from runner.attacks import native

        steps = int(self.cfg.steps)
        step = float(self.cfg.step_size) if self.cfg.step_size is not None else 2 * eps / steps
        if self.cfg.step_size is not None and self.cfg.eps:  # warm-up scales a given step too
            step *= eps / float(self.cfg.eps)
        x = x.detach()
        if eps <= 0:
            return x
        m = len(noise) // len(x)
        delta = torch.zeros_like(x)
        with attack_mode(model):
            for _ in range(steps):
                delta.requires_grad_(True)
                logits = model((x + delta).repeat_interleave(m, 0) + noise)
                soft = F.softmax(logits, 1).view(len(x), m, -1).mean(1)
                loss = F.nll_loss(torch.log(soft.clamp_min(1e-20)), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, delta)
                with torch.no_grad():
                    grad = torch.where(_norm(grad) > 0, grad, torch.randn_like(grad))
                    grad = grad / _norm(grad).clamp_min(1e-12)
                    delta = native.project(x, delta + step * grad, eps, "l2", self.lo, self.hi)
        return (x + delta).detach()


def _norm(t: Tensor) -> Tensor:
    """Per-example L2 norm, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *[1] * (t.dim() - 1))
