"""Attack-suite and eval options of the spec: every kind, every cross-field check (no torch)."""

from __future__ import annotations

import pytest
from spec_base import BASE

from runner.catalog import ATTACKS
from runner.compile import compile_spec
from runner.spec import ATTACK_SPECS, load_spec

AUDIT = BASE.replace(
    "  - {name: pgd20, kind: pgd, steps: 20, step_size: eps/4}\n",
    "  - {name: pgd20, kind: pgd, steps: 20, step_size: eps/4}\n"
    "  - {name: apgd_ce, kind: apgd}\n"
    "  - {name: apgd_t, kind: apgd, loss: dlr, targeted: true}\n"
    "  - {name: fab_t, kind: fab}\n"
    "  - {name: square, kind: square, queries: 100}\n"
    "  - {name: deepfool, kind: deepfool}\n"
    "  - {name: cw_linf, kind: cw_linf}\n"
    "  - {name: cw_l2, kind: cw_l2, eps: 1.0}\n"
    "  - {name: aa, kind: autoattack}\n"
    "  - {name: aa_art, kind: autoattack, composition: art}\n"
    "  - {name: aa_rand, kind: autoattack, composition: rand}\n"
    "  - {name: pgd_eot, kind: pgd, steps: 10, step_size: eps/4, eot_iter: 8}\n"
    "  - {name: apgd_eot, kind: apgd, eot_iter: 20}\n",
)


def one(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_every_registered_kind_has_a_spec_model():
    assert set(ATTACK_SPECS) == set(ATTACKS.names())


def test_full_suite_resolves(write_spec):
    spec = load_spec(write_spec(AUDIT)).spec
    plan = compile_spec(spec)
    by = {a.name: a for a in plan.attacks}
    kinds = {a.kind for a in plan.attacks}
    assert kinds == set(ATTACKS.names())
    assert by["apgd_ce"].engine == "native" and by["apgd_ce"].loss == "ce"
    assert by["pgd20"].engine == "art" and by["pgd20"].step_size == pytest.approx(0.025)
    assert by["cw_l2"].norm == "l2" and by["cw_l2"].eps == 1.0
    assert by["cw_linf"].norm == "linf" and by["cw_linf"].eps == pytest.approx(0.1)
    # the composition picks the engine: standard is native (FAB), ART's own is art
    assert by["aa"].engine == "native" and by["aa_art"].engine == "art"
    assert by["aa_rand"].engine == "native" and by["aa_rand"].composition == "rand"
    # EoT runs natively: an attack with eot_iter > 1 and no engine gets the native one
    assert (by["pgd_eot"].engine, by["pgd_eot"].eot_iter) == ("native", 8)
    assert (by["apgd_eot"].engine, by["apgd_eot"].eot_iter) == ("native", 20)
    assert by["pgd20"].eot_iter == 1 and by["apgd_ce"].eot_iter == 1


@pytest.mark.parametrize(
    ("attack", "path", "needle"),
    [
        ("{name: f, kind: fab, engine: art}", "attacks.2.engine", "native"),
        ("{name: c, kind: cw_l2, engine: native, eps: 1}", "attacks.2.engine", "art"),
        ("{name: s, kind: square, norm: l2, eps: 1}", "attacks.2.norm", "use engine: art"),
        ("{name: c, kind: cw_l2}", "attacks.2.eps", "l2 units"),
        (
            "{name: a, kind: autoattack, composition: art, engine: native}",
            "attacks.2.engine",
            "art",
        ),
        ("{name: a, kind: apgd, loss: hinge}", "attacks.2.loss", "'ce' or 'dlr'"),
        ("{name: s, kind: square, queries: 0}", "attacks.2.queries", "greater than or equal to 1"),
        ("{name: d, kind: deepfool, overshoot: -1}", "attacks.2.overshoot", "greater than"),
        ("{name: p, kind: pgd, step_size: 0.5}", "attacks.2.step_size", "larger than eps"),
        ("{name: p, kind: pgd, eot_iter: 0}", "attacks.2.eot_iter", "greater than or equal to 1"),
        (
            "{name: a, kind: apgd, eot_iter: 1001}",
            "attacks.2.eot_iter",
            "less than or equal to 1000",
        ),
        ("{name: a, kind: apgd, eot_iter: 2.5}", "attacks.2.eot_iter", "whole number"),
        ("{name: p, kind: pgd, eot_iter: 5, engine: art}", "attacks.2.eot_iter", "engine: native"),
        ("{name: a, kind: apgd, eot_iter: 5, engine: art}", "attacks.2.eot_iter", "no expectation"),
        (
            "{name: a, kind: autoattack, composition: rand, engine: art}",
            "attacks.2.engine",
            "ART's APGD has no EoT",
        ),
        ("{name: a, kind: fgsm, eot_iter: 5}", "attacks.2.eot_iter", "unknown key"),
    ],
)
def test_attack_errors_point_at_the_field(errors_of, attack, path, needle):
    text = BASE + f"  - {attack}\n"
    p = one(errors_of(text))
    assert p.path == path and p.line == 13, str(p)
    assert needle in p.message, p.message


def test_unknown_kind_did_you_mean(errors_of):
    p = one(errors_of(BASE + "  - {name: a, kind: apdg}\n"))
    assert p.path == "attacks.2.kind" and "did you mean 'apgd'" in p.message


@pytest.mark.parametrize(
    ("eval_block", "path", "needle"),
    [
        ("{eps_curve: [0, 0.05, 2]}", "eval.eps_curve.2", "must be in [0, 1]"),
        ("{eps_curve: [0, 0.1], curve_attacks: [pgd2]}", "eval.curve_attacks.0", "'pgd20'"),
        ("{eps_curve: []}", "eval.eps_curve", "at least 1"),
        ("{suite: worst}", "eval.suite", "'cascade' or 'independent'"),
        ("{checklist_n: 2}", "eval.checklist_n", "greater than or equal to 8"),
    ],
)
def test_eval_errors(errors_of, eval_block, path, needle):
    p = one(errors_of(BASE + f"eval: {eval_block}\n"))
    assert p.path == path and p.line == 13, str(p)
    assert needle in p.message, p.message


def test_curve_needs_a_pgd_type_attack(errors_of):
    text = BASE.replace("  - {name: pgd20, kind: pgd, steps: 20, step_size: eps/4}\n", "")
    p = one(errors_of(text + "eval: {eps_curve: [0, 0.1]}\n"))
    assert p.path == "eval.eps_curve" and "curve_attacks" in p.message


def test_eps_curve_values_resolve_later(write_spec):
    spec = load_spec(write_spec(BASE + "eval: {eps_curve: [0, 8/255, eps/2]}\n")).spec
    ev = compile_spec(spec).runs[0].eval
    assert ev.eps_curve == [0.0, "8/255", "eps/2"] and ev.suite == "cascade"
    assert ev.checklist is True


def test_eot_costs_its_passes(write_spec):
    """An attack's cost (which orders the cascade) counts every EoT pass."""
    spec = load_spec(write_spec(AUDIT)).spec
    by = {a.name: a for a in compile_spec(spec).attacks}
    cost = {n: ATTACKS.load(by[n].kind)(by[n]).cost() for n in ("pgd20", "pgd_eot", "apgd_ce",
                                                               "apgd_eot")}  # fmt: skip
    assert cost == {"pgd20": 20.0, "pgd_eot": 80.0, "apgd_ce": 100.0, "apgd_eot": 2000.0}


def test_eot_iter_is_tunable_like_any_attack_parameter(write_spec):
    """Attack-mode tuning searches eot_iter; a trial with EoT runs on the native engine."""
    from runner.tune.build import attack_config

    tune = (
        "tune:\n  mode: attack\n  target: {model: cnn, recipe: madry, attack: pgd20}\n"
        "  space:\n    eot_iter: {int: [1, 20]}\n  trials: 2\n"
    )
    loaded = load_spec(write_spec(BASE + tune))
    cfg = attack_config(loaded.spec, loaded.data, {"eot_iter": 4})
    assert (cfg.kind, cfg.eot_iter, cfg.engine) == ("pgd", 4, "native")
    assert attack_config(loaded.spec, loaded.data, {"eot_iter": 1}).engine == "art"


def test_the_randomized_audit_suite_uses_eot_in_every_gradient_attack():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "specs" / "audit-rand.yaml"
    attacks = compile_spec(load_spec(path).spec).attacks
    grad = [a for a in attacks if a.kind in ("pgd", "apgd")]
    assert len(grad) == 3 and all(a.eot_iter == 20 and a.engine == "native" for a in grad)
    assert {a.loss for a in grad if a.kind == "apgd"} == {"ce", "dlr"}
