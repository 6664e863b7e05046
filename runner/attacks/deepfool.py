"""``deepfool``: DeepFool (Moosavi-Dezfooli et al. 2016) through ART; minimal L2 norm."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.attacks.base import Attack
from runner.spec.attacks import AttackBase


class DeepFoolAttack(AttackBase):
    """DeepFool (Moosavi-Dezfooli et al. 2016) through ART; projected into the eps-ball."""

    kind: Literal["deepfool"] = Field(description="DeepFool, minimal L2 perturbation")
    steps: int = Field(100, ge=1, le=100000, description="iterations")
    overshoot: float = Field(0.02, ge=0, le=1, description="overshoot factor")
    n_grads: int = Field(10, ge=2, le=1000, description="class gradients per step (most likely)")


class DeepFool(Attack):
    config = DeepFoolAttack
    norms = {"art": ("linf", "l2")}
    minimal_norm = True

    def cost(self) -> float:
        return float(self.cfg.steps)  # stops early once fooled

    def art(self, classifier):
        from art.attacks.evasion import DeepFool as ARTDeepFool

        c = self.cfg
        return ARTDeepFool(
            classifier,
            max_iter=c.steps,
            epsilon=c.overshoot,
            nb_grads=c.n_grads,
            batch_size=c.batch_size,
            verbose=False,
        )
