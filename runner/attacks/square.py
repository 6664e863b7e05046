"""``square``: the black-box Square attack with a query budget (Andriushchenko et al. 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from runner.attacks.base import Attack, art_norm
from runner.spec.attacks import AttackBase, Engine

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class SquareAttack(AttackBase):
    """Square attack (Andriushchenko et al. 2020): black box, forward passes only."""

    kind: Literal["square"] = Field(description="black-box random-search attack")
    engine: Engine = Field("native", description="native (Linf only, fast) or art (Linf, L2)")
    queries: int = Field(5000, ge=1, le=1000000, description="query budget per example")
    p_init: float = Field(0.8, gt=0, le=1, description="initial fraction of pixels changed")
    restarts: int = Field(1, ge=1, le=100, description="restarts")


class Square(Attack):
    """Native Linf (:mod:`runner.attacks.kernels.square`); ART's SquareAttack for Linf and L2."""

    config = SquareAttack
    norms = {"native": ("linf",), "art": ("linf", "l2")}

    def cost(self) -> float:
        return self.cfg.queries * self.cfg.restarts / 2.0  # forward passes only

    def native(
        self, model: nn.Module, x: Tensor, y: Tensor, lo: float, hi: float,
        generator: torch.Generator | None,
    ) -> Tensor:  # fmt: skip
        import torch

        from runner.attacks.kernels.square import square_linf

        c = self.cfg
        out = x.clone()
        with torch.no_grad():
            alive = model(x).argmax(1) == y
        for r in range(c.restarts):  # each restart attacks only what is still unbroken
            idx = alive.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            adv = square_linf(model, x[idx], y[idx], c.eps, c.queries, c.p_init, lo, hi, generator)
            out[idx] = adv
            if r + 1 < c.restarts:
                with torch.no_grad():
                    alive[idx] = model(adv).argmax(1) == y[idx]
        return out

    def art(self, classifier):
        from art.attacks.evasion import SquareAttack as ARTSquareAttack

        c = self.cfg
        return ARTSquareAttack(
            classifier,
            norm=art_norm(c.norm),
            eps=c.eps,
            max_iter=c.queries,
            p_init=c.p_init,
            nb_restarts=c.restarts,
            batch_size=c.batch_size,
            verbose=False,
        )
