"""The tune: block: validation at file:line:col, trial compilation, export text edits (no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from spec_base import BASE

from runner.spec import load_spec
from runner.spec.tune import ATTACK_LOSSES
from runner.tune.build import Infeasible, study_name, trial_run
from runner.tune.export import flow, set_in_text
from runner.yamlio import load_yaml

ROOT = Path(__file__).resolve().parents[2]

# BASE has 12 lines: the tune block starts on line 13, its space on line 15.
TUNE = """\
tune:
  target: {model: cnn, recipe: madry}
  space:
    eps: {float: [0.05, 0.2]}
    step_size: {float: [0.01, 0.05], log: true}
    steps: {int: [3, 10]}
  objective: {maximize: robust_accuracy, attack: pgd20}
  trials: 4
"""


def one(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_valid_block_and_defaults(write_spec):
    t = load_spec(write_spec(BASE + TUNE)).spec.tune
    assert t.mode == "train" and t.trials == 4
    assert t.pruner_name == "median" and t.sampler_name == "tpe" and not t.multi
    assert [g.label for g in t.goals] == ["robust_accuracy@pgd20"]
    assert t.space["steps"].kind == "int" and t.space["step_size"].log


ISSUE_EXAMPLE = """\
tune:
  target: {model: cnn, recipe: madry}          # which run of the matrix to tune
  space:
    eps: {float: [0.02, 0.3]}                   # training eps of the recipe
    step_size: {float: [0.002, 0.1], log: true}
    steps: {int: [3, 15]}
  objective: {maximize: robust_accuracy, attack: pgd20}   # at the fixed evaluation threat model
  trials: 30
  pruner: hyperband                              # median | hyperband | none
  sampler: tpe                                   # tpe | random | nsga2 (multi-objective)
"""


def test_the_issue_example_validates(write_spec):
    t = load_spec(write_spec(BASE + ISSUE_EXAMPLE)).spec.tune
    assert (t.trials, t.pruner_name, t.sampler_name) == (30, "hyperband", "tpe")


def test_multi_objective_defaults_to_nsga2_without_pruning(write_spec):
    text = BASE + TUNE.replace(
        "  objective: {maximize: robust_accuracy, attack: pgd20}",
        "  objectives: [maximize clean_accuracy, maximize robust_accuracy]",
    )
    t = load_spec(write_spec(text)).spec.tune
    assert t.multi and t.sampler_name == "nsga2" and t.pruner_name == "none"
    assert [g.label for g in t.goals] == ["clean_accuracy", "robust_accuracy"]


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "text"),
    [
        ("eps: {float: [0.05, 0.2]}", "eps: {float: [0.2, 0.05]}", 16, "tune.space.eps.float",
         "low 0.2 >= high 0.05"),
        ("{float: [0.01, 0.05], log: true}", "{float: [0.0, 0.05], log: true}", 17,
         "tune.space.step_size.float", "log range must stay above 0"),
        ("eps: {float: [0.05, 0.2]}", "beta: {float: [0.5, 6]}", 16, "tune.space.beta",
         "recipe kind 'pgd' has no parameter 'beta'"),
        ("eps: {float: [0.05, 0.2]}", "threat.eps: {float: [0.05, 0.2]}", 16,
         "tune.space.threat.eps", "degenerate"),
        ("attack: pgd20}", "attack: pgd2}", 19, "tune.objective.attack", "did you mean 'pgd20'"),
        ("recipe: madry}", "recipe: mady}", 14, "tune.target.recipe", "did you mean 'madry'"),
        ("model: cnn,", "model: cn,", 14, "tune.target.model", "did you mean 'cnn'"),
        ("steps: {int: [3, 10]}", "steps: {float: [3, 10]}", 18, "tune.space.steps",
         "not a valid steps"),
        ("eps: {float: [0.05, 0.2]}", "eps: {flaot: [0.05, 0.2]}", 16, "tune.space.eps",
         "did you mean 'float'"),
        ("eps: {float: [0.05, 0.2]}", "eps: {float: [0.05, 0.2], int: [1, 2]}", 16,
         "tune.space.eps", "exactly one of"),
        ("eps: {float: [0.05, 0.2]}", "eps: {float: [0.05, 20]}", 16, "tune.space.eps",
         "0-255 units"),
        ("eps: {float: [0.05, 0.2]}", "optimizer.lr: {float: [1e-4, 1e-2], log: true, step: 0.1}",
         16, "tune.space.optimizer.lr", "cannot combine log"),
        ("trials: 4", "trials: 0", 20, "tune.trials", "greater than or equal to 1"),
        ("trials: 4", "trials: 4\n  pruner: medain", 21, "tune.pruner", "median"),
    ],
)  # fmt: skip
def test_space_errors_are_located(errors_of, old, new, line, path, text):
    p = one(errors_of(BASE + TUNE.replace(old, new, 1)))
    assert (p.line, p.path) == (line, path), str(p)
    assert text in p.message, p.message


@pytest.mark.parametrize(
    ("extra", "path", "text"),
    [
        ("  pruner: hyperband\n  objectives: [maximize clean_accuracy, maximize robust_accuracy]\n",
         "tune.pruner", "cannot prune multi-objective"),
        ("  sampler: nsga2\n", "tune.sampler", "nsga2 is for several objectives"),
        ("  enqueue: [{eps: 0.1, stesp: 5}]\n", "tune.enqueue.0.stesp", "did you mean 'steps'"),
        ("  enqueue: [{eps: 0.9}]\n", "tune.enqueue.0.eps", "outside [0.05, 0.2]"),
    ],
)  # fmt: skip
def test_cross_field_errors(errors_of, extra, path, text):
    body = TUNE
    if "objectives" in extra:
        body = body.replace("  objective: {maximize: robust_accuracy, attack: pgd20}\n", "")
    p = one(errors_of(BASE + body + extra))
    assert p.path == path and text in p.message, str(p)


def test_objective_and_objectives_together(errors_of):
    text = BASE + TUNE + "  objectives: [maximize clean_accuracy, maximize robust_accuracy]\n"
    p = one(errors_of(text))
    assert p.path == "tune" and "not both" in p.message


def test_bad_objective_text(errors_of):
    p = one(
        errors_of(
            BASE
            + TUNE.replace(
                "  objective: {maximize: robust_accuracy, attack: pgd20}",
                "  objectives: [maximise clean_accuracy, maximize robust_accuracy]",
            )
        )
    )
    assert p.path.startswith("tune.objectives.0") and "not an objective" in p.message


ATTACK_TUNE = """\
tune:
  mode: attack
  target: {model: cnn, recipe: madry, attack: pgd20}
  space:
    step_size: {float: [0.005, 0.1], log: true}
    steps: {int: [5, 40]}
    restarts: {int: [1, 3]}
    loss: {categorical: [ce, cw, dlr]}
  trials: 6
"""


def test_attack_mode_defaults_to_minimising_robust_accuracy(write_spec):
    t = load_spec(write_spec(BASE + ATTACK_TUNE)).spec.tune
    assert t.mode == "attack" and t.pruner_name == "none"
    assert [(g.direction, g.label) for g in t.goals] == [("minimize", "robust_accuracy")]


@pytest.mark.parametrize(
    ("old", "new", "path", "text"),
    [
        ("    steps: {int: [5, 40]}", "    eps: {float: [0.05, 0.2]}", "tune.space.eps",
         "degenerate"),
        ("[ce, cw, dlr]", "[ce, hinge]", "tune.space.loss", "loss is categorical over"),
        (", attack: pgd20}", "}", "tune.target", "needs target.attack"),
        ("attack: pgd20}", "attack: fgsm}", "tune.space.steps", "attack kind 'fgsm' has no"),
        ("  trials: 6", "  trials: 6\n  objective: {maximize: robust_accuracy}",
         "tune.objective", "minimize: robust_accuracy"),
    ],
)  # fmt: skip
def test_attack_mode_errors(errors_of, old, new, path, text):
    problems = errors_of(BASE + ATTACK_TUNE.replace(old, new, 1))
    assert any(p.path == path and text in p.message for p in problems), [str(p) for p in problems]


@pytest.mark.parametrize("loss", ATTACK_LOSSES)
def test_each_attack_loss_is_accepted(write_spec, loss):
    text = BASE + ATTACK_TUNE.replace("[ce, cw, dlr]", f"[{loss}]")
    assert load_spec(write_spec(text)).spec.tune.space["loss"].categorical == [loss]


@pytest.mark.parametrize("pruner", ["median", "hyperband", "none"])
@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_every_pruner_and_sampler_validates(write_spec, pruner, sampler):
    text = BASE + TUNE + f"  pruner: {pruner}\n  sampler: {sampler}\n"
    t = load_spec(write_spec(text)).spec.tune
    assert (t.pruner_name, t.sampler_name) == (pruner, sampler)


def test_trial_ids_are_stable_and_infeasible_combinations_refused(write_spec):
    loaded = load_spec(write_spec(BASE + TUNE))
    spec, data = loaded.spec, loaded.data
    a = trial_run(spec, data, {"eps": 0.1, "step_size": 0.03, "steps": 5})
    b = trial_run(spec, data, {"eps": 0.1, "step_size": 0.03, "steps": 5})
    c = trial_run(spec, data, {"eps": 0.12, "step_size": 0.03, "steps": 5})
    assert a.id == b.id != c.id
    assert a.recipe.eps == 0.1 and a.recipe.steps == 5 and a.model.name == "cnn"
    with pytest.raises(Infeasible, match="cannot reach the boundary"):
        trial_run(spec, data, {"eps": 0.2, "step_size": 0.01, "steps": 3})
    # the recipe as written, with the same values, is the same run: the export reuses trials
    same = load_spec(
        write_spec(BASE.replace("step_size: 0.025, steps: 7", "step_size: 0.03, steps: 5"))
    )
    from runner.compile import compile_spec

    madry = [r for r in compile_spec(same.spec).runs if r.recipe.name == "madry"][0]
    assert madry.id == a.id


def test_study_name_ignores_trials_and_pruner_but_not_evaluation(write_spec):
    def name(text):
        loaded = load_spec(write_spec(text))
        return study_name(loaded.spec, loaded.data)

    base = name(BASE + TUNE)
    assert base.startswith("t-train-")
    assert name(BASE + TUNE.replace("trials: 4", "trials: 9\n  pruner: none")) == base
    assert name(BASE + TUNE + "eval: {n: 50}\n") != base
    assert name(BASE + TUNE + "  study_name: mine\n") == "mine"


@pytest.mark.parametrize(
    ("text", "path", "value", "expect"),
    [
        ("a: {b: 1}  # keep\n", ("a", "c"), 0.5, "a: {b: 1, c: 0.5}  # keep\n"),
        ("a:\n  b: 1  # keep\nz: 2\n", ("a", "c"), 2, "a:\n  b: 1  # keep\n  c: 2\nz: 2\n"),
        ("r:\n  - {n: x, e: 0.1}\n", ("r", 0, "o", "lr"), 1e-05, "r:\n  - {n: x, e: 0.1, o: {lr: 1e-05}}\n"),
        ("r: [{n: x}]\n", ("r", 1), {"n": "y", "s": 2}, "r: [{n: x}, {n: y, s: 2}]\n"),
        ("r:\n  - {n: x}\n# end\n", ("r", 1), {"n": "y"}, "r:\n  - {n: x}\n  - {n: y}\n# end\n"),
        ("a: {b: 0.25}\n", ("a", "b"), 0.125, "a: {b: 0.125}\n"),
    ],
)  # fmt: skip
def test_export_splices_values_and_keeps_comments(text, path, value, expect):
    out = set_in_text(text, path, value)
    assert out == expect
    assert load_yaml(out, "x")[0] == load_yaml(expect, "x")[0]


@pytest.mark.parametrize("value", [0.1, 1e-05, 3, True, "adam", "yes", "8/255", [1, 2]])
def test_flow_values_read_back_exactly(value):
    assert load_yaml(f"k: {flow(value)}\n", "x")[0] == {"k": value}


def test_validate_of_a_tune_spec_imports_neither_torch_nor_optuna():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "validate", "specs/tune.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()}
    assert "torch" not in modules and "optuna" not in modules


@pytest.mark.parametrize(
    ("given", "kind", "shown"),
    [
        (None, "journal", "study.journal"),
        ("postgresql://u:secret@db:5432/s", "rdb", "postgresql://u:***@db:5432/s"),
        ("sqlite:///x.db", "rdb", "sqlite:///x.db"),
        ("elsewhere/s.journal", "journal", "s.journal"),
    ],
)
def test_storage_choice_hides_passwords(tmp_path, given, kind, shown):
    from runner.tune.storage import storage_info

    info = storage_info(given, tmp_path, 30)
    assert info.kind == kind and info.shown.endswith(shown) and "secret" not in info.shown


def test_unknown_storage_scheme_is_a_clear_error(tmp_path):
    from runner.errors import AdvrunError
    from runner.tune.storage import storage_info

    with pytest.raises(AdvrunError, match="use postgresql://"):
        storage_info("mysql://u:p@h/db", tmp_path, 30)
