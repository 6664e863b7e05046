"""Run one resolved attack config on a set of examples, native or through ART.

The kind's plug-in class (:mod:`runner.attacks.base`) does the work; this module batches it,
builds ART's classifier when needed and checks the result.

Every result is checked against (or, for minimal-norm attacks, projected into) the attack's
threat model: eps-ball of its norm and the pixel range.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from runner.attacks import native
from runner.attacks.base import Attack
from runner.catalog import ATTACKS
from runner.errors import AdvrunError
from runner.spec.attacks import AttackBase


def plugin(cfg: AttackBase) -> Attack:
    """The attack plug-in of ``cfg.kind`` (registered in :mod:`runner.catalog.attacks`), over cfg."""
    return ATTACKS.load(cfg.kind)(cfg)


def _art_generate(model, x, y, attack: Attack, art_classifier) -> Tensor:
    x_adv = attack.art_generate(model, x, y, art_classifier)
    model.eval()  # ART may switch modes
    return torch.as_tensor(x_adv, dtype=x.dtype, device=x.device)


def generate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: AttackBase,
    pixel_range: tuple[float, float],
    num_classes: int,
    art_classifier=None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial examples for (x, y) under ``cfg``, within its threat model, on x's device."""
    lo, hi = pixel_range
    model.eval()
    if len(x) == 0:
        return x.clone()
    attack = plugin(cfg)
    if cfg.engine == "native":
        bs = cfg.batch_size
        parts = [
            attack.native(model, x[i : i + bs], y[i : i + bs], lo, hi, generator)
            for i in range(0, len(x), bs)
        ]
        x_adv = torch.cat(parts).detach()
    else:
        if art_classifier is None:
            from runner.attacks.art_attacks import make_classifier

            art_classifier = make_classifier(
                model, tuple(x.shape[1:]), num_classes, pixel_range, x.device
            )
        x_adv = _art_generate(model, x, y, attack, art_classifier)
    if attack.minimal_norm:
        # minimal-norm attacks (C&W, DeepFool, FAB) are not bounded by eps: evaluate their
        # perturbation projected into the threat model's ball
        x_adv = x + native.project(x, x_adv - x, cfg.eps, cfg.norm, lo, hi)
    _check_threat(x, x_adv, cfg, lo, hi)
    return x_adv


def _check_threat(x: Tensor, x_adv: Tensor, cfg: AttackBase, lo: float, hi: float) -> None:
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if cfg.norm == "linf" else d.norm(dim=1)
    slack = 1e-5 * max(1.0, hi - lo)
    if (
        not torch.isfinite(x_adv).all()
        or dist.max().item() > cfg.eps * (1 + 1e-5) + slack
        or x_adv.min().item() < lo - slack
        or x_adv.max().item() > hi + slack
    ):
        raise AdvrunError(
            f"attack '{cfg.name}' left its threat model (max {cfg.norm} "
            f"distance {dist.max().item():.4g} > eps {cfg.eps:.4g}, or pixels outside "
            f"[{lo}, {hi}]); refusing to report its accuracy"
        )
