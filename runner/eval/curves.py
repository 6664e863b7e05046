"""Robustness curves: chosen attacks re-run at each eps of ``eval.eps_curve``.

Each point attacks the clean-correct examples (clean-wrong ones count as wrong); eps 0 is clean
accuracy. Step sizes scale with eps (a PGD step of eps/4 stays eps/4). Rows are tidy:
``{attack, eps, accuracy, n, ci_low, ci_high}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from runner import expr
from runner.attacks.runner import generate
from runner.catalog import ATTACKS
from runner.device import generator
from runner.eval.common import logits_of, progress
from runner.stats import bootstrap_ci


def curve_attacks(
    attacks: list[dict[str, Any]], threat: dict[str, Any], names: list[str] | None
) -> list[dict[str, Any]]:
    """The named attacks, or by default the pgd-type ones at the threat norm."""
    if names is not None:
        by_name = {a["name"]: a for a in attacks}
        return [by_name[n] for n in names]
    return [
        a
        for a in attacks
        if ATTACKS.get(a["kind"]).meta.get("pgd_type") and a["norm"] == threat["norm"]
    ]


def at_eps(cfg: dict[str, Any], eps: float) -> dict[str, Any]:
    """The attack config at another eps, step sizes scaled along."""
    out = dict(cfg, eps=eps)
    if "step_size" in cfg and cfg["eps"] > 0:
        out["step_size"] = cfg["step_size"] * eps / cfg["eps"]
    return out


def robustness_curves(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: list[dict[str, Any]],
    threat: dict[str, Any],
    num_classes: int,
    eval_cfg: dict[str, Any],
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    eps_values = [expr.evaluate(e, threat["eps"]) for e in eval_cfg["eps_curve"]]
    chosen = curve_attacks(attacks, threat, eval_cfg.get("curve_attacks"))
    bs, n_boot = eval_cfg["batch_size"], eval_cfg["bootstrap"]
    lo, hi = threat["pixel_range"]
    model.eval()
    clean_ok = logits_of(model, x, bs).argmax(1) == y
    idx = clean_ok.nonzero().squeeze(1)
    art_classifier = None
    if any(a.get("engine", "art") == "art" for a in chosen):
        from runner.attacks.art_attacks import make_classifier

        art_classifier = make_classifier(model, tuple(x.shape[1:]), num_classes, (lo, hi), x.device)
    rows = []
    for j, cfg in enumerate(progress(chosen, "curves")):
        for k, eps in enumerate(eps_values):
            correct = clean_ok.clone()
            if eps > 0 and len(idx):
                gen = generator(1000 + 100 * j + k, x.device)
                c = at_eps(cfg, eps)
                x_adv = generate(
                    model, x[idx], y[idx], c, (lo, hi), num_classes, art_classifier, gen
                )
                correct[idx] = logits_of(model, x_adv, bs).argmax(1) == y[idx]
            ok = correct.cpu().numpy()
            ci_low, ci_high = bootstrap_ci(ok, n_boot)
            rows.append(
                {
                    "attack": cfg["name"],
                    "eps": float(eps),
                    "accuracy": float(ok.mean()),
                    "n": int(len(ok)),
                    "ci_low": ci_low,
                    "ci_high": ci_high,
                }
            )
            log(f"curve {cfg['name']} eps {eps:g}: accuracy {ok.mean():.4f}")
    return rows
