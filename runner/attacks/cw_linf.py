"""``cw_linf``: Carlini & Wagner Linf (2017) through ART; minimal norm."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.attacks.base import Attack
from runner.spec.attacks import AttackBase


class CWLinfAttack(AttackBase):
    """Carlini & Wagner Linf (2017) through ART; minimal norm, projected into the eps-ball."""

    kind: Literal["cw_linf"] = Field(description="Carlini & Wagner Linf")
    norm: Literal["linf"] = Field("linf", description="always linf")
    confidence: float = Field(0.0, ge=0, description="required logit margin of the adversarial")
    learning_rate: float = Field(0.01, gt=0, description="step size")
    steps: int = Field(10, ge=1, le=100000, description="iterations per (tau, c) pair")
    initial_const: float = Field(1e-5, gt=0, description="first trade-off constant c")
    largest_const: float = Field(20.0, gt=0, description="c doubles up to this value")
    decrease_factor: float = Field(
        0.9, gt=0, lt=1, description="tau shrinks by this factor; ART loops per example: slow"
    )


class CWLinf(Attack):
    config = CWLinfAttack
    norms = {"art": ("linf",)}
    minimal_norm = True

    def cost(self) -> float:
        return float(self.cfg.steps) * 20

    def art(self, classifier):
        from art.attacks.evasion import CarliniLInfMethod

        c = self.cfg
        return CarliniLInfMethod(
            classifier,
            confidence=c.confidence,
            learning_rate=c.learning_rate,
            max_iter=c.steps,
            initial_const=c.initial_const,
            largest_const=c.largest_const,
            decrease_factor=c.decrease_factor,
            batch_size=c.batch_size,
            verbose=False,
        )
