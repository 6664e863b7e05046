"""An attack plug-in in one file: momentum PGD (MI-FGSM, Dong et al. 2018, "Boosting Adversarial
Attacks with Momentum").

Each step adds the L1-normalised input gradient to a decaying running sum and moves along its
sign (Linf) or its direction (L2); every step is projected into the eps-ball and the pixel range.
Register it with one line (in ``runner/catalog/attacks.py``, or at run time as the test does):

    ATTACKS.register("momentum_pgd", "my_attack:MomentumPGD", "momentum PGD (Dong et al. 2018)")

and use it in a spec: ``attacks: [{name: mi, kind: momentum_pgd, steps: 10}]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.attacks.base import Attack, Problem
from runner.spec.attacks import AttackBase
from runner.spec.base import Expr

if TYPE_CHECKING:  # no torch at import: `advrun validate` loads this file for its spec model
    import torch
    from torch import Tensor, nn


class MomentumPGDAttack(AttackBase):
    """Momentum PGD (MI-FGSM, Dong et al. 2018): PGD along a running sum of gradients."""

    kind: Literal["momentum_pgd"] = Field(description="PGD with momentum on the gradient")
    engine: Literal["native"] = Field("native", description="native only (ART has none)")
    steps: int = Field(10, ge=1, le=100000, description="iterations")
    step_size: Expr = Field("eps/4", description="step size; 'eps' here is this attack's eps")
    decay: float = Field(1.0, ge=0, le=10, description="momentum decay mu (the paper's 1.0)")


class MomentumPGD(Attack):
    """Native only: no ART engine, both norms."""

    config = MomentumPGDAttack
    norms = {"native": ("linf", "l2")}

    def native(
        self, model: nn.Module, x: Tensor, y: Tensor, lo: float, hi: float,
        generator: torch.Generator | None,
    ) -> Tensor:  # fmt: skip
        import torch

        from runner.attacks.native import input_grad, project

        c = self.cfg
        x = x.detach()
        delta = torch.zeros_like(x)
        momentum = torch.zeros_like(x)
        shape = (-1, *([1] * (x.dim() - 1)))  # per-example scalars, broadcast over C, H, W
        for _ in range(c.steps):
            grad, _ = input_grad(model, x + delta, y)  # gradient w.r.t. the input only
            l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(shape)
            momentum = c.decay * momentum + grad / l1
            if c.norm == "linf":
                step = momentum.sign()
            else:
                step = momentum / momentum.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
            delta = project(x, delta + c.step_size * step, c.eps, c.norm, lo, hi)  # every step
        return (x + delta).detach()

    def cost(self) -> float:
        return float(self.cfg.steps)  # one gradient per step: orders the cascade

    @classmethod
    def check(cls, cfg: Any, where: tuple[Any, ...], spec: Any, eps: float) -> Iterator[Problem]:
        """Its own cross-field rule: the steps must be able to reach the boundary of the ball."""
        from runner import expr
        from runner.spec.budget import check_steps

        yield from check_steps(eps, expr.evaluate(cfg.step_size, eps), cfg.steps, where)
