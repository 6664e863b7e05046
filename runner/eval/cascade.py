"""The worst case across the attack suite, as a cascade.

Attacks at the threat model (same norm, eps <= threat eps) are ordered cheap to expensive. In
``cascade`` mode each attacks only the examples that are still correct, so an attack's row is the
accuracy *after the cascade up to and including it* (cumulative, non-increasing) and ``broken``
counts the examples it broke first. In ``independent`` mode each attacks every clean-correct
example, so its row is its own accuracy. In both modes the worst case per example is the lowest
margin any attack reached: an example is robust if no attack fooled it, and ``broken_by`` names the
first attack (in cascade order) that did. Attacks outside the threat model (another norm or a larger
eps) always run independently and stay out of the worst case.

On a random model (two clean passes of the same inputs differ) a verdict is one forward draw,
so a cheap attack without EoT "breaks" examples by luck, and an example so broken leaves the
cascade before the attacks that average over draws reach it. There a break by an attack without
EoT counts only when most of ``CONFIRM_DRAWS`` draws at its input misclassify it; an example whose
break they do not confirm stays in the cascade for the next attack. Attacks with EoT (``eot_iter``
> 1, AutoAttack's rand composition) keep one-draw verdicts, as the original AutoAttack's rand
version counts its breaks, so the worst case stays comparable with it. ``fooled`` counts an
attack's one-draw misclassifications, ``broken`` the breaks it counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from runner import faults
from runner.eval.common import (
    attack_cost,
    fast_layout,
    logit_difference,
    majority_draw,
    margins,
    perturbation_norm,
    progress,
)
from runner.passes import PassCounter
from runner.spec.attacks import uses_eot
from runner.store.records import CONFIRM_DRAWS

if TYPE_CHECKING:
    from runner.eval.context import EvalContext
    from runner.spec.attacks import AttackBase


@dataclass
class SuiteResult:
    examples: pd.DataFrame  # long: (example, attack) rows incl. "clean" and "worst_case"
    info: dict[str, dict[str, Any]]  # per attack: scope, attacked, broken, seconds
    at_threat: list[str]  # names in the worst case, in cascade order
    random: bool = False  # two clean passes differed: breaks without EoT were confirmed by draws
    clean_twice: tuple[Tensor, Tensor] | None = None  # the two clean passes' logits (shared)


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _frame(name, y, pred, correct, margin, dist, attacked, broken_by=None) -> pd.DataFrame:
    n = len(y)
    return pd.DataFrame(
        {
            "example": np.arange(n),
            "attack": name,
            "label": y,
            "pred": pred,
            "correct": correct,
            "attacked": attacked,
            "margin": margin.astype(np.float32),
            "distance": dist.astype(np.float32),
            "broken_by": broken_by if broken_by is not None else np.full(n, "", dtype=object),
        }
    )


@dataclass(frozen=True)
class Clean:
    """The model on the unperturbed examples: what every attack starts from."""

    logits: Tensor
    pred: Tensor
    ok: Tensor
    random: bool = False  # a second pass gave other logits: verdicts are draws (module doc)
    second: Tensor | None = None  # that second pass's logits

    @classmethod
    def of(cls, ctx: EvalContext) -> Clean:
        logits, second = ctx.logits(ctx.x), ctx.logits(ctx.x)
        pred = logits.argmax(1)
        _, same, _ = logit_difference(logits, second)
        return cls(logits, pred, pred == ctx.y, not same, second)

    def margins(self, y: Tensor) -> Tensor:
        return margins(self.logits, y)

    def frame(self, y: Tensor) -> pd.DataFrame:
        n = len(y)
        return _frame("clean", _numpy(y), _numpy(self.pred), _numpy(self.ok),
                      _numpy(self.margins(y)), np.zeros(n), np.zeros(n, dtype=bool))  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What one stage did to the examples it attacked (``idx``, labels ``y``)."""

    idx: Tensor
    y: Tensor
    pred: Tensor
    margin: Tensor
    dist: Tensor
    passes: dict[str, int]  # forward and backward passes the attack spent
    unconfirmed: int = 0  # one-draw breaks that most of CONFIRM_DRAWS draws did not confirm

    @property
    def fooled(self) -> Tensor:
        """The examples the attack broke (by the verdict of :func:`judge`)."""
        return self.pred != self.y

    @property
    def fooled_one_draw(self) -> int:
        return int(self.fooled.sum()) + self.unconfirmed


def judge(
    ctx: EvalContext, attack: AttackBase, idx: Tensor, x_adv: Tensor, random: bool, passes
) -> Outcome:
    """An attack's outcome on examples ``idx`` from the inputs it returned: one forward draw
    each; on a random model, a break by an attack without EoT is judged again by
    ``CONFIRM_DRAWS`` draws (counted in ``passes``), whose majority decides (module doc)."""
    x, y = ctx.x[idx], ctx.y[idx]
    if not len(idx):
        empty = torch.empty(0, device=y.device)
        return Outcome(idx, y, y.clone(), empty, empty, passes)
    logits = ctx.logits(x_adv)
    pred, m = logits.argmax(1), margins(logits, y)
    unconfirmed = 0
    hit = (pred != y).nonzero().squeeze(1)
    if random and not uses_eot(attack) and len(hit):
        pred[hit], m[hit] = majority_draw(ctx.model, x_adv[hit], y[hit], CONFIRM_DRAWS,
                                          ctx.batch_size)  # fmt: skip
        unconfirmed = int((pred[hit] == y[hit]).sum())
        passes = {**passes, "forward_passes": passes["forward_passes"] + CONFIRM_DRAWS * len(hit)}
    dist = perturbation_norm(x, x_adv, attack.norm)
    return Outcome(idx, y, pred, m, dist, passes, unconfirmed)


@dataclass(frozen=True)
class Stage:
    """One attack of the suite, as a unit: its position (which seeds it), its scope and config.

    :meth:`run` attacks whichever examples it is given and returns their :class:`Outcome`, which
    :meth:`WorstCase.absorb` folds into the worst case for any subset; so a stage can be run
    again later (say with a larger budget, on the survivors) and its evidence merged the same way.
    """

    index: int
    attack: AttackBase
    scope: str  # cascade | independent | off_threat

    @property
    def in_suite(self) -> bool:
        """Whether it is at the threat model (and so counts in the worst case)."""
        return self.scope != "off_threat"

    def run(self, ctx: EvalContext, idx: Tensor, clean: Clean, classifier, counter) -> Outcome:
        """Attack examples ``idx``, seeded by the stage's position so a resumed suite matches."""
        f0, b0 = counter.forward, counter.backward
        seed = ctx.seed + self.index
        gen = ctx.generator(self.index)
        np.random.seed(seed)  # ART draws its random starts from the global streams:
        torch.manual_seed(seed)  # seed them per attack so a resumed suite matches
        x, y = ctx.x[idx], ctx.y[idx]
        x_adv = ctx.attack(self.attack, x, y, classifier, gen)
        passes = {"forward_passes": counter.forward - f0, "backward_passes": counter.backward - b0}
        return judge(ctx, self.attack, idx, x_adv, clean.random, passes)


def unconfirmed_words(out: Outcome) -> str:
    """The log's note on one-draw breaks the draws did not confirm (random models)."""
    if not out.unconfirmed:
        return ""
    return (f" ({out.unconfirmed} by one draw that most of {CONFIRM_DRAWS} draws did not "
            "confirm: not counted)")  # fmt: skip


def plan_stages(ctx: EvalContext) -> list[Stage]:
    """The suite in the order it runs: attacks at the threat model cheap to expensive (stable:
    spec order among equals) in the settings' mode, then the others, off the threat model."""
    threat, mode = ctx.threat, ctx.settings.suite
    inside = sorted([a for a in ctx.attacks if threat.covers(a)], key=attack_cost)
    outside = [a for a in ctx.attacks if not threat.covers(a)]
    return [Stage(i, a, mode if i < len(inside) else "off_threat")
            for i, a in enumerate(inside + outside)]  # fmt: skip


class WorstCase:
    """Per example, the lowest margin any attack at the threat model reached so far (with its
    prediction and distance), whether the example survives, and the attack that broke it first."""

    def __init__(self, alive, margin, pred, dist, broken_by: np.ndarray) -> None:
        self.alive, self.margin, self.pred, self.dist = alive, margin, pred, dist
        self.broken_by = broken_by

    @classmethod
    def start(cls, clean: Clean, y: Tensor) -> WorstCase:
        broken_by = np.where(_numpy(clean.ok), "", "clean").astype(object)
        dist = torch.zeros(len(y), device=y.device)
        return cls(clean.ok.clone(), clean.margins(y), clean.pred.clone(), dist, broken_by)

    @classmethod
    def from_frame(cls, state: pd.DataFrame, device: torch.device) -> WorstCase:
        """From a worst-case frame (one row per example, in example order; copied)."""
        return cls(
            torch.tensor(state["correct"].to_numpy(bool), device=device),
            torch.tensor(state["margin"].to_numpy(), device=device),
            torch.tensor(state["pred"].to_numpy(), device=device),
            torch.tensor(state["distance"].to_numpy(), device=device),
            state["broken_by"].to_numpy(object).copy(),
        )

    @classmethod
    def restore(cls, state: pd.DataFrame, like: WorstCase) -> WorstCase:
        """From the state frame a checkpoint kept (dtypes as in ``like``, a fresh start)."""
        dev = like.alive.device
        return cls(
            torch.as_tensor(state["correct"].to_numpy(bool), device=dev),
            torch.as_tensor(state["margin"].to_numpy(), device=dev).to(like.margin.dtype),
            torch.as_tensor(state["pred"].to_numpy(), device=dev),
            torch.as_tensor(state["distance"].to_numpy(), device=dev).to(like.dist.dtype),
            state["broken_by"].to_numpy(object).copy(),
        )

    def absorb(self, name: str, out: Outcome) -> int:
        """Fold an attack's outcome in; the number of examples it broke first."""
        idx = out.idx
        newly = idx[out.fooled & self.alive[idx]]
        self.broken_by[_numpy(newly)] = name
        self.alive[newly] = False
        lower = out.margin < self.margin[idx]
        upd = idx[lower]
        self.margin[upd], self.pred[upd], self.dist[upd] = (
            out.margin[lower], out.pred[lower], out.dist[lower]
        )  # fmt: skip
        return len(newly)

    def frame(self, name: str, y: Tensor, clean: Clean, broken_by: np.ndarray) -> pd.DataFrame:
        return _frame(name, _numpy(y), _numpy(self.pred), _numpy(self.alive),
                      _numpy(self.margin), _numpy(self.dist), _numpy(clean.ok),
                      broken_by)  # fmt: skip


def run_suite(ctx: EvalContext) -> SuiteResult:
    """Run ``ctx.attacks``; per-example outcomes and per-attack bookkeeping.

    With ``ctx.checkpoint``, the state after each attack is saved and a rerun continues after the
    last saved attack (each attack is seeded by its position, so the result is the same).
    Each attack's cost is recorded in examples forwarded and backwarded (``forward_passes``,
    ``backward_passes``); on a CPU the model runs channels-last meanwhile (:func:`fast_layout`).
    """
    ctx.model.eval()
    counter = PassCounter(ctx.model)
    try:
        with fast_layout(ctx.model, ctx.x):
            return _Suite(ctx, counter).run()
    finally:
        counter.close()


class _Suite:
    """One run of the suite: the clean pass, then each stage folded into the worst case."""

    def __init__(self, ctx: EvalContext, counter: PassCounter) -> None:
        self.ctx, self.counter = ctx, counter
        self.clean = Clean.of(ctx)
        self.frames = [self.clean.frame(ctx.y)]
        self.stages = plan_stages(ctx)
        self.classifier = ctx.art_classifier(ctx.attacks)
        self.worst = WorstCase.start(self.clean, ctx.y)
        self.info: dict[str, dict[str, Any]] = {}
        self.done = 0

    def run(self) -> SuiteResult:
        self._resume()
        for stage in progress(self.stages, "attacks"):
            if stage.index >= self.done:
                self._run_stage(stage)
        return self._result()

    def _resume(self) -> None:
        checkpoint = self.ctx.checkpoint
        saved = checkpoint.load_suite() if checkpoint is not None else None
        if saved is None:
            return
        self.done, self.frames, state, self.info = saved
        self.worst = WorstCase.restore(state, self.worst)
        self.ctx.log(f"resumed the attack suite after {self.done} finished attack(s)")

    def _run_stage(self, stage: Stage) -> None:
        ctx, clean, worst, name = self.ctx, self.clean, self.worst, stage.attack.name
        todo = worst.alive if stage.scope == "cascade" else clean.ok
        t0 = time.perf_counter()
        out = stage.run(ctx, todo.nonzero().squeeze(1), clean, self.classifier, self.counter)
        broken = worst.absorb(name, out) if stage.in_suite else 0
        pred, ok, m, d = self._rows(stage, out)
        attacked = torch.zeros(len(ctx.y), dtype=torch.bool, device=ctx.y.device)
        attacked[out.idx] = True
        self.frames.append(_frame(name, _numpy(ctx.y), _numpy(pred), _numpy(ok), _numpy(m),
                                  _numpy(d), _numpy(attacked)))  # fmt: skip
        seconds = time.perf_counter() - t0
        attacked_n, fooled = len(out.idx), out.fooled_one_draw
        self.info[name] = {"scope": stage.scope, "attacked": int(attacked_n), "fooled": fooled,
                           "broken": broken, "seconds": round(seconds, 3), **out.passes}  # fmt: skip
        ctx.log(f"{name} ({stage.scope}): attacked {attacked_n}, fooled {fooled}"
                f"{unconfirmed_words(out)}, accuracy {float(ok.float().mean()):.4f} "
                f"[{seconds:.1f}s]")  # fmt: skip
        faults.reached(f"attack:{name}")
        if ctx.checkpoint is not None:
            state = worst.frame("state", ctx.y, clean, worst.broken_by.copy())
            ctx.checkpoint.save_suite(stage.index + 1, self.frames, state, self.info)

    def _rows(self, stage: Stage, out: Outcome) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The stage's rows (pred, correct, margin, distance per example): the cumulative state
        after it (cascade), or its own outcome."""
        if stage.scope == "cascade":
            w = self.worst
            return w.pred, w.alive, w.margin, w.dist
        y, idx = self.ctx.y, out.idx  # clean-wrong examples stay wrong
        pred, ok = self.clean.pred.clone(), torch.zeros_like(self.clean.ok)
        m, d = self.clean.margins(y), torch.zeros(len(y), device=y.device)
        pred[idx], ok[idx], m[idx], d[idx] = out.pred, ~out.fooled, out.margin, out.dist
        return pred, ok, m, d

    def _result(self) -> SuiteResult:
        frames, worst = self.frames, self.worst
        inside = [s.attack.name for s in self.stages if s.in_suite]
        if inside:
            frames.append(worst.frame("worst_case", self.ctx.y, self.clean, worst.broken_by))
        examples = pd.concat(frames, ignore_index=True)
        # every row carries the example's worst-case breaker, for easy filtering
        examples["broken_by"] = np.tile(worst.broken_by, len(frames)) if inside else ""
        clean = self.clean
        twice = (clean.logits, clean.second) if clean.second is not None else None
        return SuiteResult(examples, self.info, inside, clean.random, twice)
