"""The checklist's measurements: a :class:`Probe` is an accuracy under one attack setting on the
checklist's examples, and :class:`Evidence` measures each once, when a check first asks for it.

Probes share passes: the clean logits, one loss gradient at the clean inputs (FGSM's step and the
``gradients`` check), and one early-exit run per PGD setting (:class:`PGDRuns`: PGD-40 continues
PGD-20, the second restart attacks what the first left). They share the suite's evidence too:
:class:`SuiteSquare` is what the cascade's Square stage broke that its white-box stages missed,
read instead of a Square probe of the checklist's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from runner.attacks import native

if TYPE_CHECKING:
    from runner.eval.context import EvalContext


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
        self._second: Tensor | None = None  # a second clean pass (the deterministic check)
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
    def clean_twice(self) -> tuple[Tensor, Tensor]:
        """Two forward passes of the clean inputs."""
        if self._second is None:
            self._second = self.ctx.logits(self.ctx.x)
        return self.clean_logits, self._second

    def share_clean(self, first: Tensor, second: Tensor) -> None:
        """Take the suite's two clean passes of these examples instead of measuring them again."""
        if self._logits is None:
            self._logits = first
        if self._second is None:
            self._second = second

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
