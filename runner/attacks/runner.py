"""Run one resolved attack config on a batch of examples, native or through ART."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from runner.attacks import native
from runner.catalog import ATTACKS
from runner.errors import AdvrunError


def generate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: dict[str, Any],
    pixel_range: tuple[float, float],
    num_classes: int,
    art_classifier=None,
) -> Tensor:
    """Adversarial examples for (x, y) under ``cfg``; returns a tensor on x's device."""
    lo, hi = pixel_range
    engine = cfg.get("engine", "art")
    if engine == "native":
        if not ATTACKS.get(cfg["kind"]).meta.get("native"):
            raise AdvrunError(f"attack kind '{cfg['kind']}' has no native engine; use engine: art")
        out = []
        for i in range(0, len(x), cfg["batch_size"]):
            xb, yb = x[i : i + cfg["batch_size"]], y[i : i + cfg["batch_size"]]
            if cfg["kind"] == "fgsm":
                out.append(native.fgsm(model, xb, yb, cfg["eps"], cfg["norm"], lo, hi))
            else:
                out.append(
                    native.pgd(
                        model,
                        xb,
                        yb,
                        cfg["eps"],
                        cfg["step_size"],
                        cfg["steps"],
                        cfg["norm"],
                        lo,
                        hi,
                        cfg.get("random_start", True),
                        cfg.get("restarts", 1),
                    )
                )
        return torch.cat(out) if out else x.clone()
    if art_classifier is None:
        from runner.attacks.art_attacks import make_classifier

        art_classifier = make_classifier(
            model, tuple(x.shape[1:]), num_classes, pixel_range, x.device
        )
    attack = ATTACKS.load(cfg["kind"])(art_classifier, cfg)
    x_np = x.detach().cpu().numpy()
    y_np = y.detach().cpu().numpy().astype(np.int64)  # class indices; ART one-hot encodes them
    x_adv = attack.generate(x=x_np, y=y_np)
    return torch.as_tensor(x_adv, dtype=x.dtype, device=x.device)
