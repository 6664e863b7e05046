"""The worst-case cascade, independent mode, per-example outcomes and robustness curves."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from digits_model import trained
from noise import assert_same_accuracy
from resolved import LINF_01, evaluation
from resolved import attack as resolved_attack

from runner.eval.evaluate import EvalContext, evaluate_run

THREAT = LINF_01
N = 150


def attack(name, kind, **kw):
    base = {"engine": "native", "norm": "linf", "eps": 0.05, "batch_size": 64}
    return resolved_attack(kind, name, **{**base, **kw})


SUITE = [
    attack("square", "square", queries=100, p_init=0.8, restarts=1),  # listed first, runs last
    attack("pgd10", "pgd", steps=10, step_size=0.0125, restarts=1, random_start=True),
    attack("fgsm", "fgsm"),
    attack("pgd_l2", "pgd", norm="l2", eps=0.5, steps=10, step_size=0.125, restarts=1,
           random_start=True),  # another norm: beside the worst case
]  # fmt: skip


@functools.cache
def evaluated(mode: str, curve: bool = False):
    model, data = trained()
    cfg = evaluation(batch_size=64, bootstrap=200, suite=mode, checklist=False,
                     eps_curve=[0.0, "eps/4", 0.05, "eps"] if curve else None)  # fmt: skip
    return evaluate_run(
        EvalContext(model, data.x_test[:N], data.y_test[:N], THREAT, 10, cfg, SUITE, lambda s: None)
    )


def table(ev, col="correct"):
    return ev.examples.pivot(index="example", columns="attack", values=col)


def test_cascade_rows_are_cumulative_and_ordered_cheap_first():
    ev = evaluated("cascade")
    rows = {r["attack"]: r for r in ev.results}
    assert list(rows) == ["clean", "square", "pgd10", "fgsm", "pgd_l2", "worst_case"]
    order = ["fgsm", "pgd10", "square"]  # cost order
    accs = [rows["clean"]["accuracy"]] + [rows[a]["accuracy"] for a in order]
    assert accs == sorted(accs, reverse=True)
    assert rows["worst_case"]["accuracy"] == rows["square"]["accuracy"]
    assert rows["fgsm"]["attacked"] == round(rows["clean"]["accuracy"] * N)
    assert rows["pgd10"]["attacked"] == rows["fgsm"]["attacked"] - rows["fgsm"]["broken"]
    broken = sum(rows[a]["broken"] for a in order)
    assert broken == round((rows["clean"]["accuracy"] - rows["worst_case"]["accuracy"]) * N)
    assert rows["pgd_l2"]["scope"] == "off_threat" and rows["fgsm"]["scope"] == "cascade"
    for r in ev.results:  # every accuracy with n and a CI around it
        assert r["n"] == N and r["ci_low"] <= r["accuracy"] <= r["ci_high"]


def test_per_example_outcomes():
    ev = evaluated("cascade")
    ex = ev.examples
    assert {"example", "attack", "label", "pred", "correct", "attacked", "margin", "distance",
            "broken_by"} <= set(ex.columns)  # fmt: skip
    worst = ex[ex.attack == "worst_case"].set_index("example")
    assert set(worst["broken_by"]) <= {"", "clean", "fgsm", "pgd10", "square"}
    assert ((worst["broken_by"] == "") == worst["correct"]).all()
    assert ((worst["margin"] > 0) == worst["correct"]).all()  # final margin decides
    assert (worst["distance"] <= 0.05 + 1e-6).all()
    broken = worst[~worst["broken_by"].isin(["", "clean"])]
    assert (broken["distance"] > 0).all()
    # the example count an attack broke equals its `broken` in the summary
    rows = {r["attack"]: r for r in ev.results}
    counts = worst["broken_by"].value_counts()
    for a in ("fgsm", "pgd10", "square"):
        assert counts.get(a, 0) == rows[a]["broken"]


def test_independent_mode_gives_each_attacks_own_accuracy():
    ev = evaluated("independent")
    t = table(ev)
    rows = {r["attack"]: r for r in ev.results}
    inside = ["fgsm", "pgd10", "square"]
    assert np.array_equal(t["worst_case"].to_numpy(), t[["clean", *inside]].all(axis=1).to_numpy())
    for a in inside:
        assert rows[a]["scope"] == "independent"
        assert rows[a]["accuracy"] >= rows["worst_case"]["accuracy"]
    # two attacks on one model and the same 150 examples (noise.assert_same_accuracy): PGD-10
    # at least about as strong as FGSM (measured: 0.813 vs 0.827, 2 discordant examples, both
    # PGD's), 3 examples or else a gap McNemar does not call real
    assert_same_accuracy(t["pgd10"], t["fgsm"], 0.02, at_most=True, what="pgd10 vs fgsm")
    # the cascade reaches the same worst case up to attack randomness (random starts, Square);
    # measured: equal, 0 discordant examples; 4 examples, or else within chance
    cascade = table(evaluated("cascade"))
    assert_same_accuracy(cascade["worst_case"], t["worst_case"], 0.03, what="cascade vs each")


def test_curves_are_tidy_and_start_at_clean_accuracy():
    ev = evaluated("cascade", curve=True)
    assert {c["attack"] for c in ev.curves} == {"pgd10"}  # default: pgd-type at the threat norm
    pts = sorted((c["eps"], c["accuracy"]) for c in ev.curves)
    assert [e for e, _ in pts] == pytest.approx([0.0, 0.025, 0.05, 0.1])
    clean = next(r["accuracy"] for r in ev.results if r["attack"] == "clean")
    assert pts[0][1] == clean
    accs = [a for _, a in pts]
    # measured 0.967, 0.913, 0.813, 0.467: neighbours 8 to 52 of 150 examples apart, and PGD
    # with a random start did not move an outcome over 5 seeds on this model (test_attacks)
    assert accs == sorted(accs, reverse=True) and accs[-1] < clean - 0.2
    for c in ev.curves:
        assert set(c) == {"attack", "eps", "accuracy", "n", "ci_low", "ci_high"} and c["n"] == N
