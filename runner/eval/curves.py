"""Robustness curves: chosen attacks re-run at each eps of ``eval.eps_curve``.

Each point attacks the clean-correct examples (clean-wrong ones count as wrong); eps 0 is clean
accuracy. Step sizes scale with eps (a PGD step of eps/4 stays eps/4). Rows are tidy:
``{attack, eps, accuracy, n, ci_low, ci_high}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from runner import expr
from runner.catalog import ATTACKS
from runner.device import generator
from runner.eval.common import progress
from runner.stats import bootstrap_ci

if TYPE_CHECKING:
    from runner.compile import Threat
    from runner.eval.context import EvalContext
    from runner.spec.attacks import AttackBase


def curve_attacks(
    attacks: Sequence[AttackBase], threat: Threat, names: list[str] | None
) -> list[AttackBase]:
    """The named attacks, or by default the pgd-type ones at the threat norm."""
    if names is not None:
        by_name = {a.name: a for a in attacks}
        return [by_name[n] for n in names]
    return [a for a in attacks if ATTACKS.load(a.kind).curve and a.norm == threat.norm]


def at_eps(cfg: AttackBase, eps: float) -> AttackBase:
    """The attack at another eps, step sizes scaled along."""
    update: dict[str, Any] = {"eps": eps}
    if "step_size" in type(cfg).model_fields and cfg.eps > 0:
        update["step_size"] = cfg.step_size * eps / cfg.eps  # type: ignore[attr-defined]
    return cfg.model_copy(update=update)


def robustness_curves(ctx: EvalContext) -> list[dict[str, Any]]:
    """One row per (curve attack, eps of ``eval.eps_curve``), each point seeded by its place."""
    settings = ctx.settings
    eps_values = [expr.evaluate(e, ctx.threat.eps) for e in settings.eps_curve or []]
    chosen = curve_attacks(ctx.attacks, ctx.threat, settings.curve_attacks)
    ctx.model.eval()
    clean_ok = ctx.logits(ctx.x).argmax(1) == ctx.y
    idx = clean_ok.nonzero().squeeze(1)
    classifier = ctx.art_classifier(chosen)
    rows = []
    for j, cfg in enumerate(progress(chosen, "curves")):
        for k, eps in enumerate(eps_values):
            ok = _point(ctx, at_eps(cfg, eps), clean_ok, idx, classifier, 1000 + 100 * j + k)
            ci_low, ci_high = bootstrap_ci(ok, settings.bootstrap)
            rows.append(
                {
                    "attack": cfg.name,
                    "eps": float(eps),
                    "accuracy": float(ok.mean()),
                    "n": int(len(ok)),
                    "ci_low": ci_low,
                    "ci_high": ci_high,
                }
            )
            ctx.log(f"curve {cfg.name} eps {eps:g}: accuracy {ok.mean():.4f}")
    return rows


def _point(
    ctx: EvalContext, cfg: AttackBase, clean_ok: Tensor, idx: Tensor, classifier, seed: int
) -> np.ndarray:
    """Per example, correct under ``cfg`` (clean-wrong ones count as wrong); only the
    clean-correct examples ``idx`` are attacked, with the stream of ``seed``."""
    correct = clean_ok.clone()
    if cfg.eps > 0 and len(idx):
        x_adv = ctx.attack(cfg, ctx.x[idx], ctx.y[idx], classifier, generator(seed, ctx.device))
        correct[idx] = ctx.logits(x_adv).argmax(1) == ctx.y[idx]
    return correct.cpu().numpy()
