"""Evaluation attacks: one spec model per ``kind``, parameters in the user's pixel units."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.spec.base import Expr, StrictModel


class AttackBase(StrictModel):
    """Options every attack shares."""

    name: str = Field(
        ..., min_length=1, max_length=80, description="your name for this attack; a results column"
    )
    eps: Expr | None = Field(
        None, description="perturbation budget in pixel units (default: the threat eps)"
    )
    norm: Literal["linf", "l2"] | None = Field(
        None, description="distance (default: the threat norm)"
    )
    engine: Literal["art", "native"] = Field(
        "art", description="art: ART's implementation (reference); native: advrun's on-device loop"
    )
    batch_size: int | None = Field(
        None, ge=1, description="attack batch size (default: eval.batch_size)"
    )


class FGSMAttack(AttackBase):
    """Fast gradient sign method (Goodfellow et al. 2015); the L2 variant steps along the gradient."""

    kind: Literal["fgsm"] = Field(description="fast gradient (sign) method, one step of size eps")


class PGDAttack(AttackBase):
    """Projected gradient descent (Madry et al. 2018)."""

    kind: Literal["pgd"] = Field(description="projected gradient descent")
    steps: int = Field(20, ge=1, le=100000, description="iterations")
    step_size: Expr = Field("eps/4", description="step size; 'eps' here is this attack's eps")
    restarts: int = Field(
        1, ge=1, le=1000, description="random restarts; the worst case per example is kept"
    )
    random_start: bool = Field(True, description="start from a uniform random point in the ball")


ATTACK_SPECS: dict[str, type[AttackBase]] = {"fgsm": FGSMAttack, "pgd": PGDAttack}
