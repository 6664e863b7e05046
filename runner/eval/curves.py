"""Robustness curves: chosen attacks re-run at each eps of ``eval.eps_curve``.

Each point attacks the clean-correct examples (clean-wrong ones count as wrong); eps 0 is clean
accuracy. Step sizes scale with eps (a PGD step of eps/4 stays eps/4). Rows are tidy:
``{attack, eps, accuracy, n, ci_low, ci_high}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from runner import expr
from runner.attacks.runner import generate
from runner.catalog import ATTACKS
from runner.device import generator
from runner.eval.common import logits_of, progress
from runner.stats import bootstrap_ci

if TYPE_CHECKING:
    from runner.compile import Threat
    from runner.spec.attacks import AttackBase
    from runner.spec.core import EvalSpec


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


def robustness_curves(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: Sequence[AttackBase],
    threat: Threat,
    num_classes: int,
    eval_cfg: EvalSpec,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    eps_values = [expr.evaluate(e, threat.eps) for e in eval_cfg.eps_curve or []]
    chosen = curve_attacks(attacks, threat, eval_cfg.curve_attacks)
    bs, n_boot = eval_cfg.batch_size, eval_cfg.bootstrap
    lo, hi = threat.pixel_range
    model.eval()
    clean_ok = logits_of(model, x, bs).argmax(1) == y
    idx = clean_ok.nonzero().squeeze(1)
    art_classifier = None
    if any(a.engine == "art" for a in chosen):
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
                    "attack": cfg.name,
                    "eps": float(eps),
                    "accuracy": float(ok.mean()),
                    "n": int(len(ok)),
                    "ci_low": ci_low,
                    "ci_high": ci_high,
                }
            )
            log(f"curve {cfg.name} eps {eps:g}: accuracy {ok.mean():.4f}")
    return rows
