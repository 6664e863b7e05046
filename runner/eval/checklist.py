"""The evaluation checklist (Carlini et al. 2019; Athalye et al. 2018): signs of a weak evaluation
or of gradient masking, each pass / warn / fail with the numbers behind it.

The probes are advrun's native attacks on a sample of the test examples, independent of the
spec's suite, so every run gets the same checks:

- iterative_vs_single_step: PGD-20 accuracy <= FGSM accuracy (an iterative attack that is weaker
  than one step means the loss surface is hiding the way).
- large_eps: PGD-50 without random start at eps = the whole pixel range (Linf) brings accuracy to
  chance or below (an unbounded attack must succeed).
- more_steps: doubling PGD's steps, or its restarts, moves accuracy by less than a point.
- black_box_vs_white_box: Square (forward passes only) is not stronger than PGD.
- gradients: loss gradients w.r.t. the input are finite and non-zero (ART's
  ``loss_gradient_check`` definition: all-zero, NaN or Inf), computed batched on the device.
- deterministic: the same input twice gives the same logits.

The checks rest on :class:`~runner.eval.probes.Probe` measurements (accuracy under one attack
setting), gathered in an :class:`~runner.eval.probes.Evidence` that measures each probe once, when
a check first asks for it, so checks share what they measure (and passes: :mod:`runner.eval.probes`);
a probe is a value, and a larger budget is another probe.

The checklist and the suite share evidence: when the suite ran as a cascade with a Square stage
at the threat model after white-box stages, ``black_box_vs_white_box`` reads that stage's
per-example results on the checklist's examples (:class:`~runner.eval.probes.SuiteSquare`: what Square broke that
the white-box stages before it missed) instead of running a Square probe of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from runner.eval.common import logit_difference
from runner.eval.probes import CLEAN, Evidence, Probe, SuiteSquare, pgd_probe, suite_square

if TYPE_CHECKING:
    from runner.eval.context import EvalContext

POINT = 0.01  # one accuracy point
SQUARE_QUERIES = 500

__all__ = ["CHECKS", "Evidence", "planned", "run_checklist"]


def _item(check: str, status: str, detail: str, **evidence: float) -> dict[str, Any]:
    return {"check": check, "status": status, "detail": detail, "evidence": evidence}


def _grade(passed: bool, warned: bool) -> str:
    return "pass" if passed else "warn" if warned else "fail"


def gradient_stats(grad: Tensor) -> dict[str, float]:
    """Fractions of examples whose input gradient of the loss is all zero / not finite."""
    g = grad.flatten(1)
    finite = torch.isfinite(g).all(1)
    bad = int((~finite).sum())
    zero = int((finite & (g.abs().amax(1) == 0)).sum())
    n = max(len(g), 1)
    return {"zero_fraction": zero / n, "nonfinite_fraction": bad / n, "n": float(len(g))}


# -- the checks, in the order they run (and so draw random numbers) --------------------------
def _step20(ctx: EvalContext) -> tuple[float, Probe, Probe, Probe, Probe]:
    """The threat eps, FGSM and PGD-20 (step 2.5 eps / 20), and PGD-40 and PGD-20 with two
    restarts at PGD-20's step size."""
    eps = float(ctx.threat.eps)
    step = 2.5 * eps / 20
    return (eps, Probe("fgsm", eps), pgd_probe(eps, 20, step), pgd_probe(eps, 40, step),
            pgd_probe(eps, 20, step, restarts=2))  # fmt: skip


def iterative_vs_single_step(ctx: EvalContext, ev: Evidence) -> dict[str, Any]:
    eps, fgsm_p, pgd20_p, _, _ = _step20(ctx)
    clean, fgsm, pgd20 = ev[CLEAN], ev[fgsm_p], ev[pgd20_p]
    return _item(
        "iterative_vs_single_step",
        _grade(pgd20 <= fgsm + POINT / 2, pgd20 <= fgsm + 2 * POINT),
        f"PGD-20 accuracy {pgd20:.3f} vs FGSM {fgsm:.3f}: an iterative attack should be at "
        "least as strong as a single step",
        pgd20=pgd20, fgsm=fgsm, clean=clean, eps=eps,
    )  # fmt: skip


def _large(ctx: EvalContext) -> Probe:
    """PGD-50 without random start at an eps that reaches any image (Linf: the pixel range)."""
    lo, hi = ctx.pixel_range
    big = (hi - lo) if ctx.threat.norm == "linf" else (hi - lo) * math.sqrt(ctx.x[0].numel())
    return pgd_probe(big, 50, 2.5 * big / 50, random_start=False)


def planned(ctx: EvalContext) -> tuple[Probe, ...]:
    """The PGD probes the checks ask for (measured together, setting by setting)."""
    return (*_step20(ctx)[2:], _large(ctx))


def large_eps(ctx: EvalContext, ev: Evidence) -> dict[str, Any]:
    big_p = _large(ctx)
    big, large = big_p.eps, ev[big_p]
    chance = 1.0 / ctx.num_classes
    return _item(
        "large_eps",
        _grade(large <= chance, large <= 2 * chance),
        f"PGD-50 at eps {big:g} (any image reachable) leaves accuracy {large:.3f}; chance is "
        f"{chance:.3f}: an unbounded attack must succeed",
        accuracy=large, chance=chance, eps=big,
    )  # fmt: skip


def more_steps(ctx: EvalContext, ev: Evidence) -> dict[str, Any]:
    _, _, pgd20_p, pgd40_p, restarts_p = _step20(ctx)
    pgd20, pgd40, pgd20x2 = ev[pgd20_p], ev[pgd40_p], ev[restarts_p]
    delta = max(abs(pgd40 - pgd20), abs(pgd20x2 - pgd20))
    return _item(
        "more_steps",
        _grade(delta < POINT, delta < 3 * POINT),
        f"doubling PGD steps (20 -> 40: {pgd20:.3f} -> {pgd40:.3f}) or restarts (1 -> 2: "
        f"{pgd20x2:.3f}) moves accuracy by {delta * 100:.1f} points (should be < 1)",
        pgd20=pgd20, pgd40=pgd40, pgd20_2restarts=pgd20x2, change=delta,
    )  # fmt: skip


def black_box_vs_white_box(ctx: EvalContext, ev: Evidence) -> dict[str, Any]:
    if ev.square is not None:
        return _black_box_from_suite(ev.square)
    eps, fgsm_p, pgd20_p, pgd40_p, restarts_p = _step20(ctx)
    white = min(ev[pgd20_p], ev[pgd40_p], ev[restarts_p], ev[fgsm_p])
    square = ev[Probe("square", eps, queries=SQUARE_QUERIES)]
    return _item(
        "black_box_vs_white_box",
        _grade(square >= white - POINT / 2, square >= white - 2 * POINT),
        f"Square (black box, {SQUARE_QUERIES} queries) accuracy {square:.3f} vs best white-box "
        f"{white:.3f}: a black-box attack that is stronger means the gradients mislead",
        square=square, white_box=white,
    )  # fmt: skip


def _black_box_from_suite(sq: SuiteSquare) -> dict[str, Any]:
    """The same question from the suite's own stages: did Square break examples the white-box
    stages before it missed? Graded as the probe is (Square's accuracy at most half a point
    below white box passes, two points warns): ``combined`` is at most the accuracy of a Square
    run on the white-box survivors, so this reads the same evidence without a second Square."""
    only = sq.square_only
    return _item(
        "black_box_vs_white_box",
        _grade(only <= POINT / 2, only <= 2 * POINT),
        f"the suite's Square ({', '.join(sq.square)}; {sq.queries} queries, black box) broke "
        f"{only * 100:.1f} points of the examples its white-box stages "
        f"({', '.join(sq.white_box)}) missed: accuracy {sq.white:.3f} -> {sq.combined:.3f} "
        f"(n {sq.n}): a black-box attack that is stronger means the gradients mislead",
        square=sq.combined, white_box=sq.white, square_only=only, shared_with_suite=1.0,
    )  # fmt: skip


def gradients(ctx: EvalContext, ev: Evidence) -> dict[str, Any]:
    g = gradient_stats(ev.loss_grad)
    zero, bad = g["zero_fraction"], g["nonfinite_fraction"]
    return _item(
        "gradients",
        "fail" if bad > 0 or zero > 0.05 else "warn" if zero > 0 else "pass",
        f"{zero:.1%} of examples have an all-zero loss gradient and {bad:.1%} a non-finite one "
        "(should both be 0)",
        **g,
    )


EOT_ADVICE = (
    "evaluate it with expectation over transformation (EoT): eot_iter: 20 on the pgd and apgd "
    "attacks (engine native; apgd with loss ce and with loss dlr are the original AutoAttack's "
    "rand version), or {kind: autoattack, composition: rand} as one stage; attacks without EoT "
    "follow one random gradient per step and overstate its robustness"
)


def _randomness(same: bool, same_pred: bool) -> str:
    """What a difference between two passes says: a random model (predictions change), or
    float non-determinism or mild randomness (logits only)."""
    if not same_pred:
        return f" and change predictions: the model is random at test time; {EOT_ADVICE}"
    if not same:
        return f" (non-deterministic kernels, or a model random at test time: if so, {EOT_ADVICE})"
    return ""


def deterministic(ctx: EvalContext, ev: Evidence) -> dict[str, Any]:
    a, b = ev.clean_twice  # two passes of the same inputs (the suite's, when it shares them)
    diff, same, same_pred = logit_difference(a, b)
    return _item(
        "deterministic",
        _grade(same, same_pred),
        f"two forward passes of the same inputs differ by at most {diff:.3g} in the logits"
        + _randomness(same, same_pred),
        max_logit_difference=diff, same_predictions=float(same_pred),
    )  # fmt: skip


CHECKS: tuple[Callable[[EvalContext, Evidence], dict[str, Any]], ...] = (
    iterative_vs_single_step,
    large_eps,
    more_steps,
    black_box_vs_white_box,
    gradients,
    deterministic,
)


def run_checklist(
    ctx: EvalContext, evidence: Evidence | None = None, suite: Any = None
) -> list[dict[str, Any]]:
    """All checks on the first ``settings.checklist_n`` examples; a list of {check, status,
    detail, evidence}. ``evidence`` (on those examples) may hold probes measured already;
    ``suite`` (the suite's result on ``ctx``'s examples) shares its Square evidence and its two
    clean passes."""
    ctx.model.eval()
    n = ctx.settings.checklist_n
    square = suite_square(suite, ctx.attacks, n) if suite is not None else None
    ctx = ctx.first(n)
    ev = evidence if evidence is not None else Evidence(ctx, square, planned(ctx))
    if (twice := getattr(suite, "clean_twice", None)) is not None:
        ev.share_clean(*(logits[:n] for logits in twice))
    out = [check(ctx, ev) for check in CHECKS]
    for item in out:
        ctx.log(f"checklist {item['check']}: {item['status']} ({item['detail']})")
    return out
