"""``fab``: the targeted fast adaptive boundary attack, FAB-T (Croce & Hein 2020); native only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from runner.attacks.base import Attack
from runner.spec.attacks import AttackBase

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class FABAttack(AttackBase):
    """Targeted fast adaptive boundary attack, FAB-T (Croce & Hein 2020); native only."""

    kind: Literal["fab"] = Field(description="FAB-T, minimal-norm; projected into the eps-ball")
    engine: Literal["native"] = Field("native", description="native only (ART has no FAB)")
    steps: int = Field(100, ge=1, le=100000, description="iterations per target")
    n_targets: int = Field(9, ge=1, le=1000, description="how many target classes")


class FAB(Attack):
    """Minimal-norm; the kernel is :mod:`runner.attacks.kernels.fab` (ART has no FAB)."""

    config = FABAttack
    norms = {"native": ("linf", "l2")}
    minimal_norm = True

    def cost(self) -> float:
        # one gradient per step, another where the step landed on an adversarial (moved back)
        return 1.5 * self.cfg.steps * self.cfg.n_targets

    def native(
        self, model: nn.Module, x: Tensor, y: Tensor, lo: float, hi: float,
        generator: torch.Generator | None,
    ) -> Tensor:  # fmt: skip
        from runner.attacks.kernels.fab import fab_t

        c = self.cfg
        return fab_t(model, x, y, c.eps, c.norm, c.steps, c.n_targets, lo, hi)
