"""Evaluate a model: clean accuracy, the attack suite and its worst case, curves, checklist.

What each ``results`` row means (``scope`` says which):

- ``clean``: accuracy on unperturbed test examples.
- an attack with scope ``cascade``: accuracy after the cascade up to and including this attack
  (cumulative); ``broken`` = examples it broke first, ``attacked`` = examples it was run on.
- an attack with scope ``independent`` or ``off_threat``: that attack's own accuracy (it attacked
  every clean-correct example).
- ``worst_case``: robust accuracy under the suite, an example counting only if no attack at the
  threat model fooled it.
- an escalation rung (``square_5000``, ``apgd_ce_5r``...; scope ``cascade``, after the suite's
  stages): a larger budget run on the survivors because the evidence asked for it
  (:mod:`runner.eval.escalation`); the worst case includes it.

Every accuracy carries n and a 95% percentile-bootstrap interval (examples resampled).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from runner import faults
from runner.eval.cascade import run_suite
from runner.eval.common import logits_of, margins, perturbation_norm
from runner.eval.context import EvalContext
from runner.stats import bootstrap_ci

if TYPE_CHECKING:
    from runner.compile import Threat
    from runner.spec.attacks import AttackBase
    from runner.store.records import EscalationRecord

__all__ = [
    "EvalContext",
    "Evaluation",
    "evaluate_run",
    "logits_of",
    "margins",
    "perturbation_norm",
]


@dataclass
class Evaluation:
    examples: pd.DataFrame
    results: list[dict[str, Any]]
    curves: list[dict[str, Any]] = field(default_factory=list)
    checklist: list[dict[str, Any]] = field(default_factory=list)
    escalation: EscalationRecord | None = None  # None: no signal (or escalation off)


def evaluate_run(ctx: EvalContext) -> Evaluation:
    """Everything ``ctx.settings`` asks for (the ``eval`` section of a run).

    With ``ctx.checkpoint``, finished attacks, the curves and the checklist are kept as they
    finish, and a rerun after a crash continues where it stopped (each phase is seeded on its
    own, so the numbers are those of an uninterrupted evaluation).
    """
    settings = ctx.settings
    suite = run_suite(ctx)
    ev = Evaluation(suite.examples, [])
    if settings.eps_curve:
        from runner.eval.curves import robustness_curves

        ev.curves = _phase(ctx, "curves", lambda: robustness_curves(ctx))
    if settings.checklist:
        from runner.eval.checklist import run_checklist

        # the suite's Square stage answers black_box_vs_white_box (no second Square)
        ev.checklist = _phase(ctx, "checklist", lambda: run_checklist(ctx, suite=suite))
    attacks = list(ctx.attacks)
    if settings.escalation.enabled:
        from runner.eval.escalation import escalate

        escalated = escalate(ctx, suite, ev.checklist)  # rungs seeded apart: reruns match
        if escalated is not None:
            suite, ev.escalation = escalated.suite, escalated.record
            attacks += escalated.attacks
            ev.examples = suite.examples
    ev.results = summarize(suite.examples, attacks, ctx.threat, settings.bootstrap, suite.info)
    return ev


def _phase(ctx: EvalContext, name: str, compute: Callable[[], Any]) -> Any:
    """A whole evaluation phase, kept once done; seeded so its numbers do not depend on what ran
    before it in this process."""
    checkpoint = ctx.checkpoint
    if checkpoint is not None and (kept := checkpoint.load(name)) is not None:
        return kept
    seed = zlib.crc32(name.encode())  # ART's random starts come from the global streams
    np.random.seed(seed)
    torch.manual_seed(seed)
    value = compute()
    faults.reached(name)
    if checkpoint is not None:
        checkpoint.save(name, value)
    return value


def summarize(
    examples: pd.DataFrame,
    attacks: Sequence[AttackBase],
    threat: Threat,
    n_boot: int,
    info: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Accuracy with a 95% bootstrap CI per row of the suite (clean, attacks, worst case)."""
    info = info or {}
    meta = {"clean": {"kind": "clean", "norm": threat.norm, "eps": 0.0, "scope": "clean"}}
    meta.update(
        {
            a.name: {"kind": a.kind, "norm": a.norm, "eps": a.eps, "engine": a.engine,
                     **info.get(a.name, {})}
            for a in attacks
        }
    )  # fmt: skip
    if "worst_case" in set(examples["attack"]):
        meta["worst_case"] = {
            "kind": "suite",
            "norm": threat.norm,
            "eps": threat.eps,
            "scope": "worst_case",
        }
    table = examples.pivot(index="example", columns="attack", values="correct")
    return [_row(name, table[name].to_numpy(bool), m, n_boot) for name, m in meta.items()]


def _row(name: str, correct: np.ndarray, meta: dict[str, Any], n_boot: int) -> dict[str, Any]:
    lo, hi = bootstrap_ci(correct, n_boot)
    return {
        "attack": name,
        **meta,
        "accuracy": float(np.mean(correct)) if len(correct) else float("nan"),
        "n": int(len(correct)),
        "ci_low": lo,
        "ci_high": hi,
    }
