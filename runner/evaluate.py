"""Evaluate a trained model: clean accuracy, each attack, the worst case, per-example outcomes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from runner.attacks.runner import generate
from runner.errors import AdvrunError
from runner.stats import bootstrap_ci


@torch.no_grad()
def logits_of(model: nn.Module, x: Tensor, bs: int) -> Tensor:
    return (
        torch.cat([model(x[i : i + bs]) for i in range(0, len(x), bs)])
        if len(x)
        else torch.empty(0)
    )


def margins(logits: Tensor, y: Tensor) -> Tensor:
    """logit of the true class minus the best other logit (< 0 means misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def perturbation_norm(x: Tensor, x_adv: Tensor, norm: str) -> Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(p=2, dim=1)


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: list[dict[str, Any]],
    threat: dict[str, Any],
    num_classes: int,
    batch_size: int,
    n_boot: int = 1000,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Per-example outcomes (long: example x attack) and one summary row per attack incl. clean."""
    model.eval()
    lo, hi = threat["pixel_range"]
    clean_logits = logits_of(model, x, batch_size)
    frames = [_outcomes("clean", y, clean_logits, torch.zeros(len(y), device=x.device))]
    art_classifier = None
    if any(a.get("engine", "art") == "art" for a in attacks):
        from runner.attacks.art_attacks import make_classifier

        art_classifier = make_classifier(model, tuple(x.shape[1:]), num_classes, (lo, hi), x.device)
    for cfg in attacks:
        x_adv = generate(model, x, y, cfg, (lo, hi), num_classes, art_classifier)
        model.eval()  # ART may have switched modes
        dist = perturbation_norm(x, x_adv, cfg["norm"])
        slack = 1e-5 * max(1.0, hi - lo)
        if (
            dist.max().item() > cfg["eps"] + slack
            or x_adv.min().item() < lo - slack
            or x_adv.max().item() > hi + slack
        ):
            raise AdvrunError(
                f"attack '{cfg['name']}' left its threat model (max {cfg['norm']} distance "
                f"{dist.max().item():.4g} > eps {cfg['eps']:.4g}, or pixels outside [{lo}, {hi}]); "
                "refusing to report its accuracy"
            )
        frames.append(_outcomes(cfg["name"], y, logits_of(model, x_adv, batch_size), dist))
        log(f"{cfg['name']}: accuracy {frames[-1]['correct'].mean():.4f}")
    examples = pd.concat(frames, ignore_index=True)
    summary = summarize(examples, attacks, threat, n_boot)
    return examples, summary


def _outcomes(attack: str, y: Tensor, logits: Tensor, dist: Tensor) -> pd.DataFrame:
    pred = logits.argmax(1)
    return pd.DataFrame(
        {
            "example": np.arange(len(y)),
            "attack": attack,
            "label": y.cpu().numpy(),
            "pred": pred.cpu().numpy(),
            "correct": (pred == y).cpu().numpy(),
            "margin": margins(logits, y).cpu().numpy().astype(np.float32),
            "distance": dist.cpu().numpy().astype(np.float32),
        }
    )


def summarize(
    examples: pd.DataFrame, attacks: list[dict[str, Any]], threat: dict[str, Any], n_boot: int
) -> list[dict[str, Any]]:
    """Accuracy with a 95% bootstrap CI per attack, plus the per-example worst case over the suite."""
    meta = {"clean": {"kind": "clean", "norm": threat["norm"], "eps": 0.0}}
    meta.update(
        {a["name"]: {"kind": a["kind"], "norm": a["norm"], "eps": a["eps"]} for a in attacks}
    )
    table = examples.pivot(index="example", columns="attack", values="correct")
    rows = []
    for name in meta:
        rows.append(_row(name, table[name].to_numpy(), meta[name], n_boot))
    if attacks:
        # An example counts as robust only if it survives every attack (and is clean-correct).
        at_threat = [
            a["name"]
            for a in attacks
            if a["eps"] <= threat["eps"] + 1e-12 and a["norm"] == threat["norm"]
        ]
        cols = ["clean", *at_threat]
        worst = table[cols].all(axis=1).to_numpy()
        rows.append(
            _row(
                "worst_case",
                worst,
                {"kind": "suite", "norm": threat["norm"], "eps": threat["eps"]},
                n_boot,
            )
        )
    return rows


def _row(name: str, correct: np.ndarray, meta: dict[str, Any], n_boot: int) -> dict[str, Any]:
    lo, hi = bootstrap_ci(correct, n_boot)
    return {
        "attack": name,
        **meta,
        "accuracy": float(np.mean(correct)),
        "n": int(len(correct)),
        "ci_low": lo,
        "ci_high": hi,
    }
