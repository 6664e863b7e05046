"""``apgd``: auto-PGD with CE or DLR loss, untargeted or targeted (Croce & Hein 2020)."""

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
from runner.spec.attacks import AttackBase, Engine

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor, nn


class APGDAttack(AttackBase):
    """Auto-PGD (Croce & Hein 2020): PGD with an adaptive step size and momentum."""

    kind: Literal["apgd"] = Field(description="auto-PGD")
    engine: Engine = Field("native", description="native (default, fast) or art")
    loss: Literal["ce", "dlr"] = Field(
        "ce", description="ce: cross-entropy; dlr: difference of logits ratio (scale invariant)"
    )
    targeted: bool = Field(
        False, description="attack each of the n_targets most likely other classes in turn"
    )
    n_targets: int = Field(9, ge=1, le=1000, description="targeted: how many target classes")
    steps: int = Field(100, ge=1, le=100000, description="iterations per run")
    restarts: int = Field(1, ge=1, le=1000, description="random restarts (per target)")
    eot_iter: int = Field(1, ge=1, le=EOT_MAX, description=EOT_HELP + " (engine native)")

    _native_for_eot = model_validator(mode="before")(eot_native_engine)


class APGD(Attack):
    """The native kernel is :mod:`runner.attacks.kernels.apgd`; ART's is AutoProjectedGradientDescent."""

    config = APGDAttack
    norms = BOTH
    curve = True

    def cost(self) -> float:
        c = self.cfg
        return float(c.steps * c.restarts * (c.n_targets if c.targeted else 1) * c.eot_iter)

    def native(
        self, model: nn.Module, x: Tensor, y: Tensor, lo: float, hi: float,
        generator: torch.Generator | None,
    ) -> Tensor:  # fmt: skip
        from runner.attacks.kernels.apgd import apgd

        c = self.cfg
        return apgd(
            model, x, y, c.eps, c.norm, c.steps, c.loss, c.targeted, c.n_targets, c.restarts,
            lo, hi, generator=generator, eot_iter=c.eot_iter,
        )  # fmt: skip

    def art(self, classifier):
        """AutoProjectedGradientDescent; initial step 2*eps as in Croce & Hein 2020."""
        from art.attacks.evasion import AutoProjectedGradientDescent

        c = self.cfg
        return AutoProjectedGradientDescent(
            classifier,
            norm=art_norm(c.norm),
            eps=c.eps,
            eps_step=2 * c.eps,
            max_iter=c.steps,
            targeted=bool(c.targeted),
            nb_random_init=c.restarts,
            batch_size=c.batch_size,
            loss_type="cross_entropy" if c.loss == "ce" else "difference_logits_ratio",
            verbose=False,
        )

    def art_generate(self, model: nn.Module, x: Tensor, y: Tensor, classifier: Any) -> np.ndarray:
        """Targeted: ART's attack towards each of the n_targets most likely other classes in
        turn, each on the examples no earlier target broke."""
        if not self.cfg.targeted:
            return super().art_generate(model, x, y, classifier)
        import numpy as np
        import torch

        x_np = x.detach().cpu().numpy()
        y_np = y.detach().cpu().numpy().astype(np.int64)
        out = x_np.copy()
        with torch.no_grad():
            logits = model(x).scatter(1, y[:, None], float("-inf"))
        k = min(self.cfg.n_targets, logits.shape[1] - 1)
        targets = logits.topk(k, dim=1).indices.cpu().numpy()
        alive = np.ones(len(x_np), dtype=bool)
        for t in range(k):
            if not alive.any():
                break
            adv = self.art(classifier).generate(x=x_np[alive], y=targets[alive, t])
            out[alive] = adv
            pred = classifier.predict(adv, batch_size=self.cfg.batch_size).argmax(1)
            alive[np.flatnonzero(alive)[pred != y_np[alive]]] = False
        return out

    @classmethod
    def check(cls, cfg: Any, where: tuple[Any, ...], spec: Any, eps: float) -> Iterator[Problem]:
        """EoT runs on the native engine only."""
        yield from check_eot(cfg, where)
