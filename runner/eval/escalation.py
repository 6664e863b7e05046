"""Budgets that grow where the evidence says so (issue 17).

The default suite is fast because most models need nothing more; a model whose gradients mislead
needs more, and its evaluation says so. After the cascade and the checklist:

Signals (each names the ladder it climbs):

- a black-box stage (Square) broke examples the white-box stages before it in the cascade missed
  -> the Square ladder;
- the checklist's ``black_box_vs_white_box``, ``gradients``, ``large_eps`` or
  ``iterative_vs_single_step`` warned or failed (gradients that mislead) -> the Square ladder;
- ``more_steps`` (more steps or restarts still move accuracy) or ``deterministic`` (a random
  model) warned or failed -> the white-box ladder; any other check that warns or fails -> both.

Ladders (each rung attacks the worst case's survivors, seeded by its position):

- Square: 1000, 2500, 5000, 10000, 20000 ... queries (above the suite's own Square), up to
  ``eval.escalation.max_queries`` (with the ART engine, whose rungs are fresh runs: no 2500);
- white box: APGD-CE 100 steps x ``max_restarts`` restarts, APGD-DLR 100 steps, APGD-T
  (9 targets x 100 steps), FAB-T (9 targets x 100 steps, unless ``fab: false``); on a random
  model (the checklist's ``deterministic`` failed) the original AutoAttack's rand version
  instead: APGD-CE and APGD-DLR, 100 steps, each step's gradient averaged over 20 passes (EoT).

The Square ladder is one search, continued (native Linf): ``square_2500`` goes on from where
``square_1000`` left each survivor (its lowest-margin point, its place in the p schedule) for 1,500
more queries, instead of starting from fresh stripes again, so a survivor that reaches 10,000 has
cost 10,000 queries, not 18,500. Within it a proposal that would not change the image gets a new
sign (the authors' own code), and a survivor stuck at a local minimum (no gain over 4 x as many
queries as there are proposals of the final window size) spends its remaining queries on a fresh
search (:class:`runner.attacks.kernels.square.SquareSearch`): that is where the second draw of a
random attack helps, on small images, at no extra budget. A rung's budget words say what ran (the
search it continues, how many stuck searches restarted). With the ART engine (L2) each rung is a
fresh Square run.

A ladder stops after the first rung that breaks nothing new (the evaluation *settled* there); a
ladder whose last rung still broke examples ran into its cap (*not settled*: the model card then
marks the evaluation unreliable when a checklist check failed). Without a signal nothing runs
and the suite's results are exactly those of the fast budget.

The escalation reuses the evidence the suite and the checklist already measured (the cascade's
per-stage counts and the checklist's verdicts) rather than probing again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from runner.eval.cascade import (
    Clean,
    Outcome,
    Stage,
    SuiteResult,
    WorstCase,
    _frame,
    _numpy,
    judge,
    unconfirmed_words,
)
from runner.eval.common import fast_layout
from runner.passes import PassCounter
from runner.spec.attacks import uses_eot
from runner.store.records import EscalationRecord, EscalationRung

if TYPE_CHECKING:
    from torch import Tensor

    from runner.attacks.kernels.square import SquareSearch
    from runner.eval.context import EvalContext
    from runner.spec.attacks import AttackBase

SQUARE, WHITE_BOX = "square", "white_box"
BLACK_BOX_KINDS = ("square",)
# checklist checks -> the ladder a warning or failure of theirs climbs
CHECK_LADDERS = {
    "black_box_vs_white_box": (SQUARE,),
    "gradients": (SQUARE,),
    "large_eps": (SQUARE,),
    "iterative_vs_single_step": (SQUARE,),
    "more_steps": (WHITE_BOX,),
    "deterministic": (WHITE_BOX,),
}
# Square's first rungs, then doubling up to the cap. A continued search (native Linf) pays only a
# rung's increment, so the 2,500 step costs nothing where it breaks examples; where it breaks none,
# the ladder settles without first spending the way to 5,000 (or, one rung later, 5,000 to 10,000
# to show that 5,000 broke nothing). A fresh run per rung (ART) would pay 2,500 on top: 1,000,
# 5,000.
SQUARE_RUNGS = {"continued": (1000, 2500, 5000), "fresh": (1000, 5000)}
SEED_OFFSET = 1000  # rung k is seeded ctx.seed + 1000 + k: apart from the suite's stages


@dataclass(frozen=True)
class Signal:
    ladder: str
    reason: str


@dataclass(frozen=True)
class Rung:
    ladder: str
    attack: AttackBase
    budget: str  # in words, e.g. "5000 queries"


def find_signals(
    suite: SuiteResult, attacks: Sequence[AttackBase], checklist: Sequence[dict[str, Any]]
) -> list[Signal]:
    """What in the suite's and the checklist's evidence asks for larger budgets."""
    out: list[Signal] = []
    kinds = {a.name: a.kind for a in attacks}
    for name in suite.at_threat:
        broken = int(suite.info.get(name, {}).get("broken", 0))
        white_before = [n for n in suite.at_threat[: suite.at_threat.index(name)]
                        if kinds.get(n) not in BLACK_BOX_KINDS]  # fmt: skip
        if kinds.get(name) in BLACK_BOX_KINDS and broken and white_before:
            out.append(Signal(SQUARE, f"{name} (black box) broke {broken} example(s) that "
                                      f"{', '.join(white_before)} missed"))  # fmt: skip
    for item in checklist:
        if item.get("status") in ("warn", "fail"):
            for ladder in CHECK_LADDERS.get(item["check"], (SQUARE, WHITE_BOX)):
                out.append(Signal(ladder, f"checklist {item['check']}: {item['status']}"))
    return out


def _square_rungs(ctx: EvalContext, attacks: Sequence[AttackBase]) -> list[Rung]:
    from runner.attacks.square import SquareAttack

    cap = ctx.settings.escalation.max_queries
    ours = [a for a in attacks if a.kind == "square" and ctx.threat.covers(a)]
    have = max((a.queries for a in ours), default=0)
    base = ours[0] if ours else SquareAttack(
        name="square", kind="square", eps=ctx.threat.eps, norm=ctx.threat.norm,
        engine="native" if ctx.threat.norm == "linf" else "art", batch_size=ctx.batch_size,
    )  # fmt: skip
    first = SQUARE_RUNGS["continued" if _ContinuedSquare.continues(base) else "fresh"]
    ladder = [q for q in first if q <= cap]
    q = first[-1] * 2
    while q <= cap:
        ladder.append(q)
        q *= 2
    if not ladder or ladder[-1] < cap:
        ladder.append(cap)
    return [Rung(SQUARE, base.model_copy(update={"name": f"square_{q}", "queries": q}),
                 f"{q} queries")
            for q in ladder if q > have]  # fmt: skip


def random_model(checklist: Sequence[dict[str, Any]]) -> bool:
    """The checklist's ``deterministic`` failed: two passes of the same inputs changed
    predictions, so the model is random at test time."""
    return any(c.get("check") == "deterministic" and c.get("status") == "fail" for c in checklist)


def _eot_rungs(ctx: EvalContext) -> list[Rung]:
    """A random model's white-box ladder: the original AutoAttack's rand version, each rung on
    the survivors (APGD-CE, then APGD-DLR; 100 steps, 1 restart, each step's gradient averaged
    over ``RAND_EOT_ITER`` = 20 passes). Targeted APGD and FAB-T are left out, as in the rand
    version: they follow one random draw per step."""
    from runner.attacks.apgd import APGDAttack
    from runner.attacks.autoattack import RAND_EOT_ITER as EOT

    common = {"eps": ctx.threat.eps, "norm": ctx.threat.norm, "engine": "native",
              "batch_size": ctx.batch_size, "steps": 100, "restarts": 1, "eot_iter": EOT}  # fmt: skip
    return [
        Rung(WHITE_BOX, APGDAttack(name=f"apgd_{loss}_eot{EOT}", kind="apgd", loss=loss,
                                   **common), f"100 steps, EoT {EOT}")
        for loss in ("ce", "dlr")
    ]  # fmt: skip


def _white_box_rungs(ctx: EvalContext, checklist: Sequence[dict[str, Any]] = ()) -> list[Rung]:
    """The white-box ladder; with EoT when the checklist found the model random."""
    from runner.attacks.apgd import APGDAttack
    from runner.attacks.fab import FABAttack

    if random_model(checklist):
        return _eot_rungs(ctx)
    esc, threat = ctx.settings.escalation, ctx.threat
    targets = max(1, min(9, ctx.num_classes - 1))
    common = {"eps": threat.eps, "norm": threat.norm, "engine": "native",
              "batch_size": ctx.batch_size}  # fmt: skip
    r = esc.max_restarts
    rungs = [
        Rung(WHITE_BOX, APGDAttack(name=f"apgd_ce_{r}r", kind="apgd", loss="ce", steps=100,
                                   restarts=r, **common), f"100 steps x {r} restarts"),
        Rung(WHITE_BOX, APGDAttack(name="apgd_dlr", kind="apgd", loss="dlr", steps=100,
                                   **common), "100 steps"),
        Rung(WHITE_BOX, APGDAttack(name="apgd_t_100", kind="apgd", loss="dlr", targeted=True,
                                   n_targets=targets, steps=100, **common),
             f"{targets} targets x 100 steps"),
    ]  # fmt: skip
    if esc.fab:
        rungs.append(Rung(WHITE_BOX, FABAttack(name="fab_t", kind="fab", steps=100,
                                               n_targets=targets, **common),
                          f"{targets} targets x 100 steps"))  # fmt: skip
    return rungs


def _unique(rungs: list[Rung], taken: set[str]) -> list[Rung]:
    """Rung names apart from the suite's attack names (``_escalated`` appended on a clash)."""
    out = []
    for r in rungs:
        name = r.attack.name
        while name in taken:
            name += "_escalated"
        taken.add(name)
        out.append(Rung(r.ladder, r.attack.model_copy(update={"name": name}), r.budget))
    return out


@dataclass
class Escalated:
    """The suite after escalation: its examples and info with each rung added, the rungs'
    attacks (for the results rows) and the record of what ran and why."""

    suite: SuiteResult
    attacks: list[AttackBase]
    record: EscalationRecord


def escalate(
    ctx: EvalContext, suite: SuiteResult, checklist: Sequence[dict[str, Any]]
) -> Escalated | None:
    """Climb the ladders the evidence asks for (None: no signal, nothing ran)."""
    signals = find_signals(suite, ctx.attacks, checklist)
    if not signals or not suite.at_threat:
        return None
    ladders = {s.ladder for s in signals}
    rungs = {SQUARE: _square_rungs(ctx, ctx.attacks) if SQUARE in ladders else [],
             WHITE_BOX: _white_box_rungs(ctx, checklist) if WHITE_BOX in ladders else []}  # fmt: skip
    taken = {a.name for a in ctx.attacks} | {"clean", "worst_case"}
    rungs = {k: _unique(v, taken) for k, v in rungs.items()}
    ctx.model.eval()
    climb = _Climb(ctx, suite, signals, taken)
    try:
        with fast_layout(ctx.model, ctx.x):
            for ladder in (SQUARE, WHITE_BOX):
                if ladder in ladders:
                    climb.ladder(ladder, rungs[ladder])
    finally:
        climb.counter.close()
    return climb.result()


class _Climb:
    """The worst case, taken up from the suite's and extended one rung at a time."""

    def __init__(
        self, ctx: EvalContext, suite: SuiteResult, signals: list[Signal], taken: set[str]
    ) -> None:
        self.ctx, self.suite, self.signals, self.taken = ctx, suite, signals, taken
        ex = suite.examples
        clean = ex[ex.attack == "clean"].sort_values("example")
        worst = ex[ex.attack == "worst_case"].sort_values("example")
        dev = ctx.y.device
        ok = torch.tensor(clean["correct"].to_numpy(bool), device=dev)
        pred = torch.tensor(clean["pred"].to_numpy(), device=dev)
        self.clean = Clean(torch.empty(0, device=dev), pred, ok, suite.random)
        self.worst = WorstCase.from_frame(worst, dev)
        self.frames = [ex[ex.attack != "worst_case"]]
        self.info = dict(suite.info)
        self.ran: list[tuple[Rung, dict[str, Any]]] = []
        self.settled = True
        self.attacks: list[AttackBase] = []
        self.counter = PassCounter(ctx.model)
        self.square = _ContinuedSquare(ctx, suite.random)

    def ladder(self, ladder: str, rungs: list[Rung]) -> None:
        reasons = [s.reason for s in self.signals if s.ladder == ladder]
        for rung in rungs:
            if not bool(self.worst.alive.any()):
                return  # nothing left to break: settled
            if not self._rung(rung, reasons):
                return  # this budget broke nothing new: settled
        # the cap: the last rung still broke examples (or no larger budget was left to try)
        self.settled = False

    def _rung(self, rung: Rung, reasons: list[str]) -> int:
        ctx, w = self.ctx, self.worst
        k = len(self.ran)
        stage = Stage(SEED_OFFSET + k, rung.attack, "cascade")
        idx = w.alive.nonzero().squeeze(1)
        t0 = time.perf_counter()
        if self.square.covers(rung):
            out, rung = self.square.run(rung, idx, SEED_OFFSET + k, self.counter)
        else:
            out = stage.run(ctx, idx, self.clean, ctx.art_classifier([rung.attack]), self.counter)
        name = rung.attack.name
        broken = w.absorb(name, out)
        # on a random model a break without EoT counted only where most draws confirmed it
        confirmed = broken if self.clean.random and not uses_eot(rung.attack) else None
        attacked = torch.zeros(len(ctx.y), dtype=torch.bool, device=ctx.y.device)
        attacked[out.idx] = True
        self.frames.append(_frame(name, _numpy(ctx.y), _numpy(w.pred), _numpy(w.alive),
                                  _numpy(w.margin), _numpy(w.dist), _numpy(attacked)))  # fmt: skip
        seconds = time.perf_counter() - t0
        fooled = out.fooled_one_draw
        info = {"scope": "cascade", "attacked": len(out.idx), "fooled": fooled,
                "broken": broken, "seconds": round(seconds, 3), **out.passes}  # fmt: skip
        self.info[name] = info
        self.ran.append((rung, {**info, "reasons": reasons, "confirmed": confirmed}))
        self.attacks.append(rung.attack)
        ctx.log(f"escalation {name} ({rung.budget}; {'; '.join(reasons)}): attacked "
                f"{len(out.idx)}, broke {broken} more{unconfirmed_words(out)} "
                f"[{seconds:.1f}s]")  # fmt: skip
        return broken

    def result(self) -> Escalated:
        ctx, w = self.ctx, self.worst
        frames = [*self.frames, w.frame("worst_case", ctx.y, self.clean, w.broken_by)]
        examples = pd.concat(frames, ignore_index=True)
        examples["broken_by"] = np.tile(w.broken_by, len(examples) // len(ctx.y))
        at_threat = [*self.suite.at_threat, *(r.attack.name for r, _ in self.ran)]
        rungs = [
            EscalationRung(
                attack=r.attack.name, kind=r.attack.kind, ladder=r.ladder, budget=r.budget,
                reasons=i["reasons"], attacked=i["attacked"], broken=i["broken"],
                seconds=i["seconds"], forward_passes=i["forward_passes"],
                backward_passes=i["backward_passes"], eot_iter=getattr(r.attack, "eot_iter", 1),
                confirmed=i["confirmed"],
            )
            for r, i in self.ran
        ]  # fmt: skip
        record = EscalationRecord(
            signals=list(dict.fromkeys(s.reason for s in self.signals)),
            rungs=rungs,
            settled=self.settled,
            broken=sum(r.broken for r in rungs),
        )
        suite = replace(self.suite, examples=examples, info=self.info, at_threat=at_threat)
        return Escalated(suite, self.attacks, record)


class _ContinuedSquare:
    """The Square ladder's one search (native Linf), continued by each rung on the survivors."""

    def __init__(self, ctx: EvalContext, random: bool) -> None:
        self.ctx, self.random = ctx, random  # random: breaks are judged by draws (cascade doc)
        self.idx: Tensor | None = None  # the examples the search covers (the first rung's)
        self.parts: list[SquareSearch] = []  # one per batch of them
        self.last: tuple[str, int] | None = None  # the rung run last: its name and queries

    @staticmethod
    def continues(attack: AttackBase) -> bool:
        """Square on this engine and norm is one search continued from rung to rung."""
        return attack.engine == "native" and attack.norm == "linf"

    def covers(self, rung: Rung) -> bool:
        return rung.ladder == SQUARE and self.continues(rung.attack)

    def _start(self, a: AttackBase, idx: Tensor, seed_index: int) -> None:
        from runner.attacks.kernels.square import SquareSearch

        ctx, bs = self.ctx, a.batch_size
        lo, hi = ctx.pixel_range
        gen = ctx.generator(seed_index)
        self.idx = idx
        self.parts = [SquareSearch(ctx.model, ctx.x[idx[i : i + bs]], ctx.y[idx[i : i + bs]],
                                   a.eps, a.p_init, lo, hi, gen, skip_noop=True,
                                   restart_stale=True)
                      for i in range(0, len(idx), bs)]  # fmt: skip

    def run(self, rung: Rung, idx: Tensor, seed_index: int, counter) -> tuple[Outcome, Rung]:
        """Continue the search to the rung's queries on examples ``idx`` (survivors only shrink,
        so they are among the first rung's); the rung returned carries the budget in words."""
        from runner.attacks.runner import _check_threat

        ctx, a = self.ctx, rung.attack
        if self.idx is None:
            self._start(a, idx, seed_index)
        assert self.idx is not None
        f0, b0 = counter.forward, counter.backward
        restarts0 = self._restarts()
        pos = torch.searchsorted(self.idx, idx)  # both ascending
        bs = a.batch_size
        for i, part in enumerate(self.parts):
            local = pos[(pos >= i * bs) & (pos < (i + 1) * bs)] - i * bs
            if len(local):
                part.run(a.queries, local)
        x_adv = self.points(idx)
        passes = {"forward_passes": counter.forward - f0, "backward_passes": counter.backward - b0}
        _check_threat(ctx.x[idx], x_adv, a, *ctx.pixel_range)
        out = judge(ctx, a, idx, x_adv, self.random, passes)
        budget = rung.budget
        if self.last is not None:
            name, q = self.last
            budget += f", continuing {name}'s search (+{a.queries - q} a survivor)"
        restarted = self._restarts() - restarts0
        if restarted:
            budget += f"; {restarted} stuck search(es) restarted fresh"
        self.last = (a.name, a.queries)
        return out, Rung(rung.ladder, a, budget)

    def points(self, idx: Tensor) -> Tensor:
        """The search's lowest-margin point so far for each example of ``idx`` (ascending, among
        the first rung's examples)."""
        assert self.idx is not None
        if len(idx) == 0:
            return self.ctx.x[idx]
        return torch.cat([part.best for part in self.parts])[torch.searchsorted(self.idx, idx)]

    def _restarts(self) -> int:
        return sum(int(p.searches.sum()) - len(p.x) for p in self.parts)
