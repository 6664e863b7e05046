"""The poisoning scenario: a backdoor attacker on the training set, and its success rate.

The trigger is one of ART's backdoor perturbations (``add_pattern_bd``, ``add_single_bd``)
applied through ``PoisoningAttackBackdoor``. The attacker replaces a ``fraction`` of the training
set by images of other classes stamped with the trigger and labelled ``target``. The attack
success rate (ASR) is the share of triggered test images of the other classes that the model
classifies as the target: lower is better. Stamping happens once per run on the CPU (NumPy,
ART's functions), never inside the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from runner import expr
from runner.errors import AdvrunError
from runner.stats import bootstrap_ci

if TYPE_CHECKING:
    from runner.spec.poisoning import PoisoningSpec


def _pixel_value(cfg: PoisoningSpec, pixel_range: tuple[float, float]) -> float:
    v = cfg.pixel_value
    return float(pixel_range[1]) if v is None else expr.evaluate(v)


def trigger(cfg: PoisoningSpec, pixel_range: tuple[float, float]) -> Callable:
    """The perturbation as a function of an NCHW array (ART's functions stamp NHWC)."""
    from art.attacks.poisoning.perturbations import add_pattern_bd, add_single_bd

    fn = add_pattern_bd if cfg.trigger == "pattern" else add_single_bd
    value, distance = _pixel_value(cfg, pixel_range), int(cfg.distance)

    def stamp_nchw(x: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        out = fn(nhwc, distance=distance, pixel_value=value)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2)).astype(x.dtype, copy=False)

    return stamp_nchw


def check_fits(cfg: PoisoningSpec, input_shape: tuple[int, ...], num_classes: int) -> None:
    """The target is a class and the trigger fits inside the image."""
    for key in ("target", "source"):
        c = getattr(cfg, key)
        if c is not None and c >= num_classes:
            raise AdvrunError(
                f"poisoning.{key} {c} is not a class of this data set "
                f"(classes 0..{num_classes - 1})"
            )
    reach = cfg.distance + (2 if cfg.trigger == "pattern" else 0)
    if reach > min(input_shape[-2:]):
        raise AdvrunError(
            f"poisoning.distance {cfg.distance}: the {cfg.trigger} trigger does not fit in "
            f"{input_shape[-2]}x{input_shape[-1]} images; use a smaller distance"
        )


def stamp(x: Tensor, cfg: PoisoningSpec, pixel_range: tuple[float, float]) -> Tensor:
    """``x`` with the trigger stamped on (same device and dtype)."""
    out = trigger(cfg, pixel_range)(x.detach().cpu().numpy())
    return torch.as_tensor(out, dtype=x.dtype, device=x.device)


def sources(y: np.ndarray, cfg: PoisoningSpec) -> np.ndarray:
    """Where the trigger is stamped: labels of the source class (every class but the target
    when the spec names none)."""
    return y != int(cfg.target) if cfg.source is None else y == int(cfg.source)


def poison_training_set(
    x: Tensor, y: Tensor, cfg: PoisoningSpec, pixel_range: tuple[float, float], num_classes: int
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Replace ``fraction`` of (x, y) by triggered images of the source class(es) labelled
    ``target``."""
    from art.attacks.poisoning import PoisoningAttackBackdoor

    check_fits(cfg, tuple(x.shape[1:]), num_classes)
    target = int(cfg.target)
    y_np = y.cpu().numpy()
    source = sources(y_np, cfg)
    candidates = np.flatnonzero(source)
    n = int(round(cfg.fraction * len(y_np)))
    if n < 1 or n > len(candidates):
        where = "outside the target class" if cfg.source is None else f"of class {cfg.source}"
        raise AdvrunError(
            f"poisoning.fraction {cfg.fraction:g} asks for {n} poisoned images, but the "
            f"training set has {len(candidates)} images {where}"
        )
    idx = np.sort(np.random.default_rng(cfg.seed).choice(candidates, size=n, replace=False))
    attack = PoisoningAttackBackdoor(trigger(cfg, pixel_range))
    x_p, y_p = attack.poison(x[idx].cpu().numpy(), y=np.full(n, target, dtype=np.int64))
    x, y = x.clone(), y.clone()
    where = torch.as_tensor(idx, device=x.device)
    x[where] = torch.as_tensor(x_p, dtype=x.dtype, device=x.device)
    y[where] = torch.as_tensor(y_p, dtype=y.dtype, device=y.device)
    return x, y, {"n_poisoned": n, "indices": idx}


@torch.no_grad()
def attack_success_rate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: PoisoningSpec,
    pixel_range: tuple[float, float],
    batch_size: int = 512,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """ASR on the test images of the source class(es), with a 95% bootstrap CI."""
    target = int(cfg.target)
    keep = torch.as_tensor(sources(y.cpu().numpy(), cfg), device=y.device)
    xs = stamp(x[keep], cfg, pixel_range)
    model.eval()
    pred = torch.cat(
        [model(xs[i : i + batch_size]).argmax(1) for i in range(0, len(xs), batch_size)]
    )
    hit = (pred == target).cpu().numpy()
    lo, hi = bootstrap_ci(hit, n_boot)
    return {
        "asr": float(hit.mean()) if hit.size else float("nan"),
        "n": int(hit.size),
        "ci_low": lo,
        "ci_high": hi,
        "target": target,
        "trigger": cfg.trigger,
        "fraction": float(cfg.fraction),
    }
