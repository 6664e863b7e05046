"""``fgsm``: the fast gradient (sign) method (Goodfellow, Shlens & Szegedy 2015)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from runner.attacks.base import BOTH, Attack, art_norm
from runner.spec.attacks import AttackBase

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class FGSMAttack(AttackBase):
    """Fast gradient sign method (Goodfellow et al. 2015); the L2 variant steps along the gradient."""

    kind: Literal["fgsm"] = Field(description="fast gradient (sign) method, one step of size eps")


class FGSM(Attack):
    """One gradient step of size eps from x, projected into the ball and the pixel range."""

    config = FGSMAttack
    norms = BOTH

    def cost(self) -> float:
        return 1.0

    def native(
        self, model: nn.Module, x: Tensor, y: Tensor, lo: float, hi: float,
        generator: torch.Generator | None,
    ) -> Tensor:  # fmt: skip
        from runner.attacks import native

        return native.fgsm(model, x, y, self.cfg.eps, self.cfg.norm, lo, hi)

    def art(self, classifier):
        from art.attacks.evasion import FastGradientMethod

        c = self.cfg
        return FastGradientMethod(
            classifier, norm=art_norm(c.norm), eps=c.eps, batch_size=c.batch_size
        )
