"""Escalation (issue 17): budgets that grow where the evidence says so, and only there.

The masked model is built here: the session's standard-trained digits CNN behind an input
quantisation to 4 levels (``round``: a zero input gradient everywhere), so white-box attacks
see nothing and only a black-box attack (Square) breaks examples.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from digits_model import trained
from resolved import LINF_01, evaluation
from resolved import attack as resolved_attack
from torch import nn

from runner.compile import Threat
from runner.eval.evaluate import EvalContext, evaluate_run
from runner.store import RunMetrics
from runner.store.files import dump

N = 120


class Quantized(nn.Module):
    """The input rounded to ``levels`` grey levels before the network (no gradient passes)."""

    def __init__(self, inner: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.inner, self.levels = inner, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.levels - 1
        return self.inner(torch.round(x * k) / k)


def attack(name, kind, **kw):
    return resolved_attack(kind, name, **{"engine": "native", "norm": "linf", "eps": 0.1,
                                          "batch_size": 128, **kw})  # fmt: skip


FAST = [
    attack("fgsm", "fgsm"),
    attack("pgd10", "pgd", steps=10, step_size=0.025, restarts=1, random_start=True),
    attack("square", "square", queries=100, p_init=0.8, restarts=1),
]


def _evaluate(model, attacks, enabled: bool, checklist: bool = False, threat=LINF_01, **esc):
    _, data = trained()
    cfg = evaluation(batch_size=128, bootstrap=100, checklist=checklist,
                     escalation={"enabled": enabled, **esc})  # fmt: skip
    ctx = EvalContext(model, data.x_test[:N], data.y_test[:N], threat, 10, cfg, attacks,
                      lambda s: None)  # fmt: skip
    return evaluate_run(ctx)


@functools.cache
def masked(enabled: bool):
    model, _ = trained()
    return _evaluate(Quantized(model).eval(), FAST, enabled, max_queries=1000)


def _rows(ev):
    """Each results row by attack, without its wall-clock seconds (never compared)."""
    return {r["attack"]: {k: v for k, v in r.items() if k != "seconds"} for r in ev.results}


def test_square_breaking_what_white_box_missed_escalates_and_breaks_more():
    fast, esc = masked(False), masked(True)
    rows, fast_rows = _rows(esc), _rows(fast)
    assert fast.escalation is None and "square_1000" not in fast_rows
    assert fast_rows["square"]["broken"] > 0  # the signal: Square broke what fgsm, pgd10 missed
    rec = esc.escalation
    assert rec is not None
    assert rec.signals == [
        f"square (black box) broke {fast_rows['square']['broken']} example(s) that fgsm, "
        "pgd10 missed"
    ]
    (rung,) = rec.rungs  # max_queries 1000: one rung above the suite's 100 queries
    assert (rung.attack, rung.kind, rung.ladder, rung.budget) == (
        "square_1000", "square", "square", "1000 queries")  # fmt: skip
    # it attacked exactly the fast suite's survivors and broke some of them
    survivors = round(fast_rows["worst_case"]["accuracy"] * N)
    assert rung.attacked == survivors
    assert rung.broken > 0
    assert rung.forward_passes > 0 and rung.backward_passes == 0  # Square: forward passes only
    assert rec.settled is False  # the cap's rung still broke examples
    assert rec.broken == rung.broken
    # the worst case includes it, its row is cumulative after the suite, and per example
    assert rows["square_1000"]["scope"] == "cascade"
    assert rows["square_1000"]["broken"] == rung.broken
    assert round(rows["worst_case"]["accuracy"] * N) == survivors - rung.broken
    assert rows["worst_case"]["accuracy"] == rows["square_1000"]["accuracy"]
    w = esc.examples[esc.examples.attack == "worst_case"].sort_values("example")
    assert (w["broken_by"] == "square_1000").sum() == rung.broken
    assert not w.loc[w["broken_by"] == "square_1000", "correct"].any()
    # the suite's own rows are those of the fast budget, exactly
    for name in ("clean", "fgsm", "pgd10", "square"):
        assert rows[name] == fast_rows[name], name
    # every example broken by the fast suite stays broken by the same attack
    wf = fast.examples[fast.examples.attack == "worst_case"].sort_values("example")
    hit = wf["broken_by"].to_numpy() != ""
    assert np.array_equal(w["broken_by"].to_numpy()[hit], wf["broken_by"].to_numpy()[hit])


def test_escalation_is_recorded_in_metrics_and_survives_a_round_trip():
    rec = masked(True).escalation
    m = RunMetrics(run_id="r", slug="s", eval_hash="h", model="m", arch="a", recipe="audit",
                   kind="audit", results=masked(True).results, escalation=rec)  # fmt: skip
    back = RunMetrics.model_validate(dump(m))
    assert back.escalation == rec
    assert "square_1000 (1000 queries: broke" in rec.words
    assert "did not settle" in rec.words


def test_a_healthy_model_escalates_nothing_and_its_results_are_unchanged():
    """The unmasked CNN at eps 0.05 with the whole fast suite and the checklist: every check
    passes and Square breaks nothing new, so no signal, and the evaluation is exactly the one
    with escalation off (same rows, same per-example outcomes)."""
    model, _ = trained()
    eps = 0.05
    suite = [a.model_copy(update={"eps": eps, **({"step_size": eps / 4} if a.kind == "pgd" else {})})
             for a in FAST]  # fmt: skip
    threat = Threat("linf", eps, (0.0, 1.0))
    on = _evaluate(model, suite, True, checklist=True, threat=threat)
    off = _evaluate(model, suite, False, checklist=True, threat=threat)
    assert [c["status"] for c in on.checklist] == ["pass"] * len(on.checklist)
    assert _rows(on)["square"]["broken"] == 0
    assert on.escalation is None
    assert _rows(on) == _rows(off)
    assert on.examples.equals(off.examples)


def test_a_checklist_warning_climbs_the_white_box_ladder_until_a_rung_breaks_nothing():
    """A weak suite (FGSM, PGD-10) on the unmasked CNN at eps 0.1: the checklist's more_steps
    warns (PGD-20 -> 40 moves accuracy more than a point, measured 1.7 at n = 120), so the
    white-box ladder runs on the survivors and stops at the first rung that breaks nothing."""
    model, _ = trained()
    ev = _evaluate(model, FAST[:2], True, checklist=True)
    warned = [c["check"] for c in ev.checklist if c["status"] != "pass"]
    rec = ev.escalation
    assert rec is not None and warned
    assert rec.signals == [f"checklist {c}: warn" for c in warned]
    assert {r.ladder for r in rec.rungs} == {"white_box"}
    assert [r.attack for r in rec.rungs] == ["apgd_ce_5r", "apgd_dlr", "apgd_t_100", "fab_t"][
        : len(rec.rungs)
    ]
    assert rec.rungs[-1].broken == 0 and all(r.broken > 0 for r in rec.rungs[:-1])
    assert rec.settled is True
    rows = _rows(ev)
    assert round((rows["pgd10"]["accuracy"] - rows["worst_case"]["accuracy"]) * N) == rec.broken
