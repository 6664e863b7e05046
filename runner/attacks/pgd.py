"""``pgd``: projected gradient descent (Madry et al. 2018)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from runner.attacks.base import (
    BOTH,
    EOT_HELP,
    EOT_MAX,
    Attack,
    Problem,
    art_norm,
    check_eot,
    eot_native_engine,
)
from runner.spec.attacks import AttackBase
from runner.spec.base import Expr

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class PGDAttack(AttackBase):
    """Projected gradient descent (Madry et al. 2018)."""

    kind: Literal["pgd"] = Field(description="projected gradient descent")
    steps: int = Field(20, ge=1, le=100000, description="iterations")
    step_size: Expr = Field("eps/4", description="step size; 'eps' here is this attack's eps")
    restarts: int = Field(
        1, ge=1, le=1000, description="random restarts; the worst case per example is kept"
    )
    random_start: bool = Field(True, description="start from a uniform random point in the ball")
    eot_iter: int = Field(1, ge=1, le=EOT_MAX, description=EOT_HELP + " (engine native)")

    _native_for_eot = model_validator(mode="before")(eot_native_engine)


class PGD(Attack):
    """PGD with random restarts; each example stops at the first point that fools the model."""

    config = PGDAttack
    norms = BOTH
    curve = True

    def cost(self) -> float:
        return float(self.cfg.steps * self.cfg.restarts * self.cfg.eot_iter)

    def native(
        self, model: nn.Module, x: Tensor, y: Tensor, lo: float, hi: float,
        generator: torch.Generator | None,
    ) -> Tensor:  # fmt: skip
        from runner.attacks import native

        c = self.cfg
        return native.pgd(
            model, x, y, c.eps, c.step_size, c.steps, c.norm, lo, hi, c.random_start, c.restarts,
            generator=generator, early_exit=True, eot_iter=c.eot_iter,
        )  # fmt: skip

    def art(self, classifier):
        from art.attacks.evasion import ProjectedGradientDescent

        c = self.cfg
        return ProjectedGradientDescent(
            classifier,
            norm=art_norm(c.norm),
            eps=c.eps,
            eps_step=c.step_size,
            max_iter=c.steps,
            num_random_init=c.restarts if c.random_start else 0,
            batch_size=c.batch_size,
            verbose=False,
        )

    @classmethod
    def check(cls, cfg: Any, where: tuple[Any, ...], spec: Any, eps: float) -> Iterator[Problem]:
        """Step sizes that overshoot the ball, or that can never reach its boundary; EoT on
        the native engine only."""
        from runner import expr
        from runner.spec.budget import check_steps

        yield from check_eot(cfg, where)
        step = expr.evaluate(cfg.step_size, eps)
        yield from check_steps(eps, step, cfg.steps, where, iterative=cfg.steps > 1)
