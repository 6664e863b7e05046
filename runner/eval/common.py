"""Small tensor helpers shared by the cascade, the curves and the checklist."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm


@torch.no_grad()
def logits_of(model: nn.Module, x: Tensor, bs: int) -> Tensor:
    if len(x) == 0:
        return torch.empty(0, device=x.device)
    return torch.cat([model(x[i : i + bs]) for i in range(0, len(x), bs)])


def margins(logits: Tensor, y: Tensor) -> Tensor:
    """Logit of the true class minus the best other logit (< 0 means misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def perturbation_norm(x: Tensor, x_adv: Tensor, norm: str) -> Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(p=2, dim=1)


def attack_cost(cfg: Any) -> float:
    """Rough gradient-pass equivalents per example, to order a cascade cheap to expensive."""
    kind = cfg.kind
    if kind == "fgsm":
        return 1.0
    if kind == "pgd":
        return float(cfg.steps * cfg.restarts)
    if kind == "apgd":
        return float(cfg.steps * cfg.restarts * (cfg.n_targets if cfg.targeted else 1))
    if kind == "deepfool":
        return float(cfg.steps)  # stops early once fooled
    if kind == "fab":
        return 2.0 * cfg.steps * cfg.n_targets
    if kind == "square":
        return cfg.queries * cfg.restarts / 3.0  # forward passes only
    if kind == "cw_l2":
        return float(cfg.steps * cfg.binary_search_steps) * 2
    if kind == "cw_linf":
        return float(cfg.steps) * 20
    return 1e9  # autoattack: last


def progress(items: list, desc: str):
    """A progress bar over attacks on a terminal; silent when stderr is not one (CI, logs)."""
    return tqdm(items, desc=desc, leave=False, disable=not sys.stderr.isatty())
