"""The certify: block (randomized smoothing): what validates, every error at file:line:col, the
L-inf note, tuning objectives on certified accuracy, and how it enters the plan (no torch)."""

from __future__ import annotations

import pytest
from spec_base import BASE

from runner.compile import Run, compile_spec
from runner.spec import load_spec
from runner.spec.certify import notes

CERTIFY = "certify: {sigma: [0.25, 0.5], n0: 100, n: 1000}\n"  # line 13 of BASE + CERTIFY
NOISE = "  - {name: gauss, kind: gaussian_augment, sigma: [0.12, 0.25], epochs: 1}\n"


def one(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_a_certify_block_validates_with_the_papers_defaults(write_spec):
    spec = load_spec(write_spec(BASE + "certify: {sigma: 0.25}\n")).spec
    c = spec.certify
    assert c.sigma == [0.25] and (c.n0, c.n, c.alpha) == (100, 100_000, 0.001)
    assert c.predict_samples == 100_000 and c.n_examples == 500 and c.skip == 1
    assert c.curve((0.0, 1.0)) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert c.curve((0.0, 255.0))[1] == pytest.approx(63.75)  # default radii scale with the range


@pytest.mark.parametrize(
    ("block", "path", "text"),
    [
        ("{sigma: 0}", "certify.sigma", "finite number > 0"),
        ("{sigma: [0.25, -1]}", "certify.sigma", "finite number > 0"),
        ("{sigma: .inf}", "certify.sigma", "finite number > 0"),
        ("{sigma: .nan}", "certify.sigma", "finite number > 0"),
        ("{sigma: big}", "certify.sigma", "a number > 0 (pixel units) or 'train'"),
        ("{sigma: []}", "certify.sigma", "certifies nothing"),
        ("{sigma: [0.25, 0.25]}", "certify.sigma", "repeats a value"),
        ("{sigma: 0.25, alpha: 0}", "certify.alpha", "greater than 0"),
        ("{sigma: 0.25, alpha: 0.5}", "certify.alpha", "less than 0.5"),
        ("{sigma: 0.25, alpha: 1.5}", "certify.alpha", "less than 0.5"),
        ("{sigma: 0.25, radii: [0, -0.5]}", "certify.radii.1", "greater than or equal to 0"),
        ("{sigma: 0.25, n0: 100, n: 100}", "certify.n0", "n0 100 must be smaller than n 100"),
        ("{sigma: 0.25, n: 0}", "certify.n", "greater than or equal to 1"),
        ("{sigma: 0.25, n_samples: 10}", "certify.n_samples", "unknown key"),
        ("{sigma: train}", "certify.sigma", "no recipe trains with noise"),
    ],
)
def test_certify_errors_are_placed(errors_of, block, path, text):
    p = one(errors_of(BASE + f"certify: {block}\n"))
    assert (p.line, p.path) == (13, path), str(p)
    assert text in p.message, p.message


def test_sigma_train_is_valid_with_a_noise_recipe(write_spec):
    text = BASE.replace("attacks:\n", NOISE + "attacks:\n") + "certify: {sigma: [train, 0.5]}\n"
    spec = load_spec(write_spec(text)).spec
    assert spec.certify.sigma == ["train", 0.5]
    runs = compile_spec(spec).runs
    assert sorted(r.recipe.sigma for r in runs if r.recipe.kind == "gaussian_augment") == [
        0.12,
        0.25,
    ]


def test_an_linf_threat_gets_a_note_not_an_error(write_spec):
    linf = load_spec(write_spec(BASE + CERTIFY)).spec
    (note,) = notes(linf)
    assert "L2" in note and "r/sqrt(d)" in note
    l2 = load_spec(write_spec(BASE + CERTIFY), ["threat.norm=l2", "threat.eps=0.5"]).spec
    assert notes(l2) == []


def test_certification_changes_the_evaluation_not_the_runs(write_spec):
    plain = compile_spec(load_spec(write_spec(BASE)).spec)
    certified = compile_spec(load_spec(write_spec(BASE + CERTIFY, "c.yaml")).spec)
    assert [r.id for r in plain.runs] == [r.id for r in certified.runs]  # no retraining
    assert plain.eval_hash != certified.eval_hash  # re-evaluated
    assert "certify" not in plain.runs[0].to_json()  # run.json of a plain spec is unchanged
    back = Run.from_json(certified.runs[0].to_json())
    assert back.certify == certified.runs[0].certify and back.certify.n == 1000


TUNE = """\
tune:
  target: {model: cnn, recipe: gauss}
  space: {sigma: {float: [0.1, 0.5]}}
  objectives:
    - {maximize: smoothed_accuracy}
    - OBJECTIVE
"""


def _tuned(objective: str, certify: str = "certify: {sigma: train, n: 1000}\n") -> str:
    base = BASE.replace("attacks:\n", NOISE.replace("[0.12, 0.25]", "0.25") + "attacks:\n")
    return base + certify + TUNE.replace("OBJECTIVE", objective)


def test_a_study_can_trade_smoothed_against_certified_accuracy(write_spec):
    spec = load_spec(write_spec(_tuned("{maximize: certified_accuracy, radius: 0.5}"))).spec
    goals = spec.tune.goals
    assert [g.label for g in goals] == ["smoothed_accuracy", "certified_accuracy@r=0.5"]
    assert spec.tune.sampler_name == "nsga2"


@pytest.mark.parametrize(
    ("objective", "certify", "text"),
    [
        ("{maximize: certified_accuracy}", None, "needs radius: one of certify's radii"),
        ("{maximize: certified_accuracy, radius: 0.3}", None, "radius 0.3 is not on the curve"),
        (
            "{maximize: certified_accuracy, radius: 0.5}",
            "certify: {sigma: [train, 0.5], n: 1000}\n",
            "several noise levels (train, 0.5): name one with sigma",
        ),
        (
            "{maximize: certified_accuracy, radius: 0.5, sigma: 0.3}",
            None,
            "sigma 0.3 is not certified",
        ),
        ("{maximize: certified_accuracy, radius: 0.5}", "", "needs a certify: block"),
        ("{maximize: clean_accuracy, radius: 0.5}", None, "radius applies to certified_accuracy"),
    ],
)
def test_certified_objectives_are_checked(errors_of, objective, certify, text):
    args = (objective,) if certify is None else (objective, certify)
    text_of_spec = _tuned(*args)
    line = text_of_spec.splitlines().index(f"    - {objective}") + 1
    problems = errors_of(text_of_spec)
    assert all(p.path.startswith("tune.objectives") for p in problems), [str(p) for p in problems]
    p = one([p for p in problems if p.path.startswith("tune.objectives.1")])
    assert p.line == line and text in p.message, str(p)
