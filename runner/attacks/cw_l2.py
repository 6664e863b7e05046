"""``cw_l2``: Carlini & Wagner L2 (2017) through ART; minimal norm."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.attacks.base import Attack
from runner.spec.attacks import AttackBase


class CWL2Attack(AttackBase):
    """Carlini & Wagner L2 (2017) through ART; minimal norm, projected into the L2 eps-ball."""

    kind: Literal["cw_l2"] = Field(description="Carlini & Wagner L2")
    norm: Literal["l2"] = Field("l2", description="always l2")
    confidence: float = Field(0.0, ge=0, description="required logit margin of the adversarial")
    learning_rate: float = Field(0.01, gt=0, description="Adam step size")
    binary_search_steps: int = Field(10, ge=1, le=100, description="searches over the constant c")
    steps: int = Field(10, ge=1, le=100000, description="iterations per binary-search step")
    initial_const: float = Field(0.01, gt=0, description="initial trade-off constant c")


class CWL2(Attack):
    config = CWL2Attack
    norms = {"art": ("l2",)}
    minimal_norm = True

    def cost(self) -> float:
        return float(self.cfg.steps * self.cfg.binary_search_steps) * 2

    def art(self, classifier):
        from art.attacks.evasion import CarliniL2Method

        c = self.cfg
        return CarliniL2Method(
            classifier,
            confidence=c.confidence,
            learning_rate=c.learning_rate,
            binary_search_steps=c.binary_search_steps,
            max_iter=c.steps,
            initial_const=c.initial_const,
            batch_size=c.batch_size,
            verbose=False,
        )
