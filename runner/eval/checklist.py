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

The checks rest on :class:`Probe` measurements (accuracy under one attack setting), gathered in
an :class:`Evidence` that measures each probe once, when a check first asks for it, so checks
share what they measure; a probe is a value, and a larger budget is another probe.

The checklist and the suite share evidence: when the suite ran as a cascade with a Square stage
at the threat model after white-box stages, ``black_box_vs_white_box`` reads that stage's
per-example results on the checklist's examples (:class:`SuiteSquare`: what Square broke that
the white-box stages before it missed) instead of running a Square probe of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.attacks import native

if TYPE_CHECKING:
    from runner.eval.context import EvalContext

POINT = 0.01  # one accuracy point
SQUARE_QUERIES = 500


@dataclass(frozen=True)
class Probe:
    """One measurement: accuracy on the checklist's examples under an attack setting (``clean``:
    none). Step sizes are absolute; ``random_start`` for PGD only."""

    kind: Literal["clean", "fgsm", "pgd", "square"]
    eps: float = 0.0
    steps: int = 0
    step_size: float = 0.0
    restarts: int = 1
    random_start: bool = True
    queries: int = 0


CLEAN = Probe("clean")


def pgd_probe(eps: float, steps: int, step_size: float, **kw: Any) -> Probe:
    return Probe("pgd", eps, steps, step_size, **kw)


@dataclass(frozen=True)
class SuiteSquare:
    """The suite's Square evidence on the checklist's examples (the first ``n``): accuracy after
    its white-box stages that ran before its first Square stage (``white``; examples a Square
    stage broke count as standing), and after those and its Square stages (``combined``)."""

    square: tuple[str, ...]  # the Square stages
    white_box: tuple[str, ...]  # the white-box stages before the first of them
    queries: int  # the largest Square stage's queries
    white: float
    combined: float
    n: int

    @property
    def square_only(self) -> float:
        """Share of the examples broken by Square that the white-box stages before it missed."""
        return self.white - self.combined


def suite_square(suite: Any, attacks: Any, n: int) -> SuiteSquare | None:
    """The cascade's Square evidence on its first ``n`` examples, or None where the suite holds
    none to share (no Square stage at the threat model after a white-box stage, or not a
    cascade): the checklist then runs its own Square probe."""
    by_name = {a.name: a for a in attacks}
    order = [a for a in suite.at_threat if a in by_name]
    if not order or any(suite.info.get(a, {}).get("scope") != "cascade" for a in order):
        return None
    square = [a for a in order if by_name[a].kind == "square"]
    if not square:
        return None
    white = [a for a in order[: order.index(square[0])] if by_name[a].kind != "square"]
    if not white:
        return None
    ex = suite.examples
    w = ex[(ex.attack == "worst_case") & (ex.example < n)]
    if not len(w):
        return None
    broken_by = w["broken_by"].to_numpy(object)
    correct = w["correct"].to_numpy(bool)
    by_square = np.isin(broken_by, square)
    return SuiteSquare(
        tuple(square), tuple(white), max(int(by_name[a].queries) for a in square),
        white=float((correct | by_square).mean()), combined=float(correct.mean()), n=len(w),
    )  # fmt: skip


class Evidence:
    """The probes' accuracies on the checklist's examples, each measured once, when first asked
    for (so the order of the checks' requests is the order of the random draws); ``square``:
    the suite's Square evidence on those examples, when it has some to share."""

    def __init__(self, ctx: EvalContext, square: SuiteSquare | None = None) -> None:
        self.ctx = ctx
        self.accuracy: dict[Probe, float] = {}
        self.square = square

    def __getitem__(self, probe: Probe) -> float:
        if probe not in self.accuracy:
            self.accuracy[probe] = self.ctx.accuracy(
                _MEASURE[probe.kind](self.ctx, probe), self.ctx.y
            )
        return self.accuracy[probe]


def _batched(fn, x: Tensor, y: Tensor, bs: int) -> Tensor:
    return torch.cat([fn(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)])


def _clean(ctx: EvalContext, probe: Probe) -> Tensor:
    return ctx.x


def _fgsm(ctx: EvalContext, p: Probe) -> Tensor:
    (lo, hi), norm = ctx.pixel_range, ctx.threat.norm
    return _batched(lambda a, b: native.fgsm(ctx.model, a, b, p.eps, norm, lo, hi),
                    ctx.x, ctx.y, ctx.batch_size)  # fmt: skip


def _pgd(ctx: EvalContext, p: Probe) -> Tensor:
    (lo, hi), norm = ctx.pixel_range, ctx.threat.norm
    gen = ctx.generator(0)
    return _batched(
        lambda xb, yb: native.pgd(ctx.model, xb, yb, p.eps, p.step_size, p.steps, norm, lo, hi,
                                  p.random_start, p.restarts, generator=gen),
        ctx.x, ctx.y, ctx.batch_size,
    )  # fmt: skip


def _square(ctx: EvalContext, p: Probe) -> Tensor:
    """Square: advrun's kernel at Linf, ART's attack at L2."""
    (lo, hi), norm, bs = ctx.pixel_range, ctx.threat.norm, ctx.batch_size
    if norm == "linf":
        from runner.attacks.kernels.square import square_linf

        gen = ctx.generator(0)
        return _batched(
            lambda a, b: square_linf(ctx.model, a, b, p.eps, p.queries, 0.8, lo, hi, gen),
            ctx.x, ctx.y, bs,
        )  # fmt: skip
    from runner.attacks.square import SquareAttack

    cfg = SquareAttack(name="checklist_square", kind="square", engine="art", eps=p.eps,
                       norm=norm, queries=p.queries, p_init=0.8, restarts=1,
                       batch_size=bs)  # fmt: skip
    return ctx.attack(cfg, ctx.x, ctx.y)


_MEASURE: dict[str, Callable[[EvalContext, Probe], Tensor]] = {
    "clean": _clean,
    "fgsm": _fgsm,
    "pgd": _pgd,
    "square": _square,
}


def _item(check: str, status: str, detail: str, **evidence: float) -> dict[str, Any]:
    return {"check": check, "status": status, "detail": detail, "evidence": evidence}


def _grade(passed: bool, warned: bool) -> str:
    return "pass" if passed else "warn" if warned else "fail"


def gradient_stats(model: nn.Module, x: Tensor, y: Tensor, bs: int) -> dict[str, float]:
    """Fractions of examples whose input gradient of the loss is all zero / not finite."""
    zero = bad = 0
    for i in range(0, len(x), bs):
        xb = x[i : i + bs].detach().requires_grad_(True)
        loss = F.cross_entropy(model(xb), y[i : i + bs], reduction="sum")
        (g,) = torch.autograd.grad(loss, xb)
        g = g.flatten(1)
        finite = torch.isfinite(g).all(1)
        bad += int((~finite).sum())
        zero += int((finite & (g.abs().amax(1) == 0)).sum())
    n = max(len(x), 1)
    return {"zero_fraction": zero / n, "nonfinite_fraction": bad / n, "n": float(len(x))}


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


def large_eps(ctx: EvalContext, ev: Evidence) -> dict[str, Any]:
    lo, hi = ctx.pixel_range
    big = (hi - lo) if ctx.threat.norm == "linf" else (hi - lo) * math.sqrt(ctx.x[0].numel())
    large = ev[pgd_probe(big, 50, 2.5 * big / 50, random_start=False)]
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
    g = gradient_stats(ctx.model, ctx.x, ctx.y, ctx.batch_size)
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
    a, b = ctx.logits(ctx.x), ctx.logits(ctx.x)
    diff = float((a - b).abs().max()) if len(a) else 0.0
    same_pred = bool((a.argmax(1) == b.argmax(1)).all()) if len(a) else True
    scale = float(a.abs().max()) if len(a) else 1.0
    same = diff <= 1e-6 * max(scale, 1.0)
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
    ``suite`` (the suite's result on ``ctx``'s examples) shares its Square evidence."""
    ctx.model.eval()
    n = ctx.settings.checklist_n
    square = suite_square(suite, ctx.attacks, n) if suite is not None else None
    ctx = ctx.first(n)
    ev = evidence if evidence is not None else Evidence(ctx, square)
    out = [check(ctx, ev) for check in CHECKS]
    for item in out:
        ctx.log(f"checklist {item['check']}: {item['status']} ({item['detail']})")
    return out
