"""The plug-in contract: registries load plug-in classes lazily, plug-in modules import no torch,
and a plug-in registered at run time validates like a built-in one (no torch here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from spec_base import BASE

from runner.catalog import ATTACKS, DATASETS, RECIPES
from runner.cli import main
from runner.errors import AdvrunError
from runner.spec import ATTACK_SPECS, RECIPE_SPECS, Spec, load_spec

ROOT = Path(__file__).resolve().parents[2]
WITH_EXAMPLES = BASE.replace(
    "attacks:\n",
    "  - {name: cur, kind: curriculum_pgd, epochs: 2, eps: 0.1, step_size: 0.025, steps: 5}\n"
    "attacks:\n",
).replace(
    "  - {name: pgd20, kind: pgd, steps: 20, step_size: eps/4}\n",
    "  - {name: pgd20, kind: pgd, steps: 20, step_size: eps/4}\n"
    "  - {name: mi, kind: momentum_pgd, steps: 10}\n",
)


def test_every_plugin_module_imports_without_torch():
    """Validation loads attack, recipe and data set classes for their spec models and checks, so
    their modules import no torch, NumPy or ART at the top (models are nn.Modules, loaded only
    when a run builds one)."""
    code = (
        "import sys\n"
        "from runner.catalog import ATTACKS, DATASETS, RECIPES\n"
        "loaded = [r.load(n) for r in (ATTACKS, RECIPES, DATASETS) for n in r.names()]\n"
        "heavy = [m for m in ('torch', 'numpy', 'art') if m in sys.modules]\n"
        "print('LOADED', len(loaded), 'HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    n = len(ATTACKS.names()) + len(RECIPES.names()) + len(DATASETS.names())
    assert f"LOADED {n} HEAVY []" in out.stdout


def test_each_catalog_line_names_a_class_holding_its_spec_model():
    for registry in (ATTACKS, RECIPES):
        for name in registry.names():
            cls = registry.load(name)
            assert cls.config.model_fields["kind"].annotation.__args__ == (name,)
    assert ATTACKS.load("pgd").curve and ATTACKS.load("fab").minimal_norm
    assert ATTACKS.load("square").norms == {"native": ("linf",), "art": ("linf", "l2")}
    assert RECIPES.load("pgd").art_trainer == "AdversarialTrainerMadryPGD"
    assert RECIPES.load("mart").art_trainer is None
    assert DATASETS.load("cifar100").options == ("labels",) and DATASETS.load("mnist").needs


def test_a_plugin_registered_at_run_time_validates_plans_and_goes_away(
    example_plugins, write_spec, capsys
):
    spec = load_spec(write_spec(WITH_EXAMPLES)).spec
    kinds = {r.kind for r in spec.recipes} | {a.kind for a in spec.attacks}
    assert {"curriculum_pgd", "momentum_pgd"} <= kinds
    assert "momentum_pgd" in ATTACK_SPECS and "curriculum_pgd" in RECIPE_SPECS
    assert main(["plan", str(write_spec(WITH_EXAMPLES)), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    cur = next(r for r in rows if r["recipe"] == "cur")
    assert cur["hyperparameters"]["min_steps"] == 1 and cur["hyperparameters"]["eps"] == 0.1


def test_a_run_time_plugins_own_checks_run_at_validation(example_plugins, errors_of):
    text = WITH_EXAMPLES.replace("steps: 5}", "steps: 5, min_steps: 9}")
    (problem,) = errors_of(text)
    assert problem.path == "recipes.2.min_steps" and "more than steps 5" in problem.message
    text = WITH_EXAMPLES.replace("kind: momentum_pgd, steps: 10}", "kind: momentum_pgd, steps: 1}")
    (problem,) = errors_of(text)
    assert problem.path == "attacks.2.steps" and "cannot reach the boundary" in problem.message


def test_unregistered_plugin_kinds_are_unknown_again(errors_of):
    problems = errors_of(WITH_EXAMPLES)
    assert any("unknown recipe kind 'curriculum_pgd'" in p.message for p in problems)
    assert any("unknown attack kind 'momentum_pgd'" in p.message for p in problems)
    assert "momentum_pgd" not in ATTACK_SPECS


def test_the_schema_follows_the_registries(example_plugins):
    assert "curriculum_pgd" in json.dumps(Spec.model_json_schema())


def test_the_schema_is_the_committed_one_once_the_plugins_are_gone(capsys):
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == (ROOT / "specs" / "advrun.schema.json").read_text()


def test_a_plugin_whose_spec_model_has_another_kind_is_refused(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "examples"))
    with pytest.raises(AdvrunError, match=r'kind: Literal\["mi"\]'):
        ATTACKS.register("mi", "my_attack:MomentumPGD")
    assert "mi" not in ATTACKS  # the registry is left as it was
    with pytest.raises(AdvrunError, match="cannot be loaded"):
        ATTACKS.register("ghost", "no_such_module:Ghost")
    assert "ghost" not in ATTACKS


def test_registry_refuses_duplicates_and_bad_targets():
    with pytest.raises(ValueError, match="registered twice"):
        ATTACKS.register("pgd", "runner.attacks.pgd:PGD")
    with pytest.raises(ValueError, match="module:attr"):
        RECIPES.register("x", "runner.recipes.pgd")
