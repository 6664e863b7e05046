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
share what they measure; a probe is a value, and a larger budget is another probe. Probes share
passes too: the PGD probes at one setting are one early-exit run (:class:`PGDRuns`: PGD-40
continues PGD-20, the second restart attacks what the first left), and FGSM and ``gradients``
read one loss gradient.

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
from torch import Tensor

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
    the suite's Square evidence on those examples, when it has some to share.

    Probes share passes: the clean logits, one loss gradient at the clean inputs (FGSM's step and
    the ``gradients`` check), and one :class:`PGDRuns` per PGD setting (eps, step size, random
    start) for every probe of ``planned`` at that setting: PGD-20 and PGD-40 are one trajectory,
    and the second restart attacks only what the first left standing. Every PGD probe stops
    attacking an example at the first point that fools the model (a point found counts, as in
    the suite); examples the model misclassifies clean count as broken and are not attacked.
    """

    def __init__(
        self, ctx: EvalContext, square: SuiteSquare | None = None, planned: tuple[Probe, ...] = ()
    ) -> None:
        self.ctx = ctx
        self.accuracy: dict[Probe, float] = {}
        self.square = square
        self.planned = planned
        self.runs: dict[tuple[float, float, bool], PGDRuns] = {}
        self._logits: Tensor | None = None
        self._grad: Tensor | None = None

    def __getitem__(self, probe: Probe) -> float:
        if probe not in self.accuracy:
            correct = _MEASURE[probe.kind](self, probe)
            self.accuracy[probe] = float(correct.float().mean()) if len(correct) else 0.0
        return self.accuracy[probe]

    @property
    def clean_logits(self) -> Tensor:
        if self._logits is None:
            self._logits = self.ctx.logits(self.ctx.x)
        return self._logits

    @property
    def clean_correct(self) -> Tensor:
        return self.clean_logits.argmax(1) == self.ctx.y

    @property
    def loss_grad(self) -> Tensor:
        """The input gradient of the cross-entropy at the clean inputs, batched on the device."""
        if self._grad is None:
            ctx, bs = self.ctx, self.ctx.batch_size
            self._grad = torch.cat([native.input_grad(ctx.model, ctx.x[i : i + bs],
                                                      ctx.y[i : i + bs])[0]
                                    for i in range(0, len(ctx.x), bs)])  # fmt: skip
        return self._grad

    def correct_at(self, x_adv: Tensor) -> Tensor:
        """Correct on the clean input and at ``x_adv``."""
        return self.clean_correct & (self.ctx.logits(x_adv).argmax(1) == self.ctx.y)


def _setting(p: Probe) -> tuple[float, float, bool]:
    return (p.eps, p.step_size, p.random_start)


@dataclass
class PGDRuns:
    """PGD's restarts at one setting, as the first point of each restart's trajectory that
    fools the model (``at[q]``: per example, 0 the start, k after k steps; larger: none in the
    ``steps[q]`` steps run, or not attacked). Restart q > 0 attacked only the examples that no
    earlier restart fooled within ``floor[q]`` steps; those count as broken for every probe it
    answers, so a probe (s steps, r restarts) is answered exactly where each of its restarts ran
    at least s steps and ``floor[q] <= s``."""

    at: list[Tensor]
    steps: list[int]
    floor: list[int]

    def answers(self, p: Probe) -> bool:
        r = p.restarts
        return r <= len(self.at) and all(
            self.steps[q] >= p.steps and self.floor[q] <= p.steps for q in range(r)
        )

    def correct(self, p: Probe) -> Tensor:
        first = torch.stack(self.at[: p.restarts]).amin(0)
        return first > p.steps

    @classmethod
    def run(cls, ev: Evidence, probes: list[Probe]) -> PGDRuns:
        """The restarts that answer every probe of ``probes`` (one setting), on the clean-correct
        examples, batched, drawing each restart's random start for the whole batch."""
        ctx, p0 = ev.ctx, probes[0]
        (lo, hi), norm, bs = ctx.pixel_range, ctx.threat.norm, ctx.batch_size
        never = max(p.steps for p in probes) + 1
        gen = ctx.generator(0)
        earlier = torch.where(ev.clean_correct, never, 0)
        at: list[Tensor] = []
        steps: list[int] = []
        floor: list[int] = []
        for q in range(max(p.restarts for p in probes)):
            need = [p.steps for p in probes if p.restarts > q]
            todo = earlier > min(need)
            out = torch.full_like(earlier, never)
            for i in range(0, len(ctx.x), bs):
                xb, yb, tb = ctx.x[i : i + bs], ctx.y[i : i + bs], todo[i : i + bs]
                start = (native.random_start(xb, p0.eps, norm, lo, hi, gen) if p0.random_start
                         else torch.zeros_like(xb))  # fmt: skip
                if bool(tb.any()):
                    out[i : i + bs][tb] = native.first_fooled(
                        ctx.model, xb[tb], yb[tb], start[tb], p0.eps, p0.step_size, max(need),
                        norm, lo, hi,
                    )  # fmt: skip
            at.append(out if q else torch.minimum(out, earlier))
            steps.append(max(need))
            floor.append(min(need) if q else 0)
            earlier = torch.minimum(earlier, out)
        return cls(at, steps, floor)


def _clean(ev: Evidence, probe: Probe) -> Tensor:
    return ev.clean_correct


def _fgsm(ev: Evidence, p: Probe) -> Tensor:
    ctx = ev.ctx
    (lo, hi), norm = ctx.pixel_range, ctx.threat.norm
    return ev.correct_at(native.fgsm_step(ctx.x, ev.loss_grad, p.eps, norm, lo, hi))


def _pgd(ev: Evidence, p: Probe) -> Tensor:
    """From the runs at the probe's setting: run once for every planned probe there."""
    runs = ev.runs.get(_setting(p))
    if runs is None or not runs.answers(p):
        same = [q for q in ev.planned if _setting(q) == _setting(p)]
        runs = PGDRuns.run(ev, [*same, p])
        ev.runs.setdefault(_setting(p), runs)
    return runs.correct(p)


def _square(ev: Evidence, p: Probe) -> Tensor:
    """Square: advrun's kernel at Linf, ART's attack at L2."""
    ctx = ev.ctx
    (lo, hi), norm, bs = ctx.pixel_range, ctx.threat.norm, ctx.batch_size
    if norm == "linf":
        from runner.attacks.kernels.square import square_linf

        gen = ctx.generator(0)
        x_adv = torch.cat([square_linf(ctx.model, ctx.x[i : i + bs], ctx.y[i : i + bs], p.eps,
                                       p.queries, 0.8, lo, hi, gen)
                           for i in range(0, len(ctx.x), bs)])  # fmt: skip
        return ev.correct_at(x_adv)
    from runner.attacks.square import SquareAttack

    cfg = SquareAttack(name="checklist_square", kind="square", engine="art", eps=p.eps,
                       norm=norm, queries=p.queries, p_init=0.8, restarts=1,
                       batch_size=bs)  # fmt: skip
    return ev.correct_at(ctx.attack(cfg, ctx.x, ctx.y))


_MEASURE: dict[str, Callable[[Evidence, Probe], Tensor]] = {
    "clean": _clean,
    "fgsm": _fgsm,
    "pgd": _pgd,
    "square": _square,
}


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
    a, b = ev.clean_logits, ctx.logits(ctx.x)  # the second pass of the same inputs
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
    ev = evidence if evidence is not None else Evidence(ctx, square, planned(ctx))
    out = [check(ctx, ev) for check in CHECKS]
    for item in out:
        ctx.log(f"checklist {item['check']}: {item['status']} ({item['detail']})")
    return out
