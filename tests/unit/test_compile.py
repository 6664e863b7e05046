"""The compiler: expansion, stable ids, sweeps (no torch needed)."""

from __future__ import annotations

import subprocess
import sys

from spec_base import BASE

from runner.compile import compile_spec, run_dirname
from runner.spec import load_spec


def test_models_x_recipes_x_seeds(write_spec):
    spec = load_spec(write_spec(BASE.replace("seeds: [0]", "seeds: [0, 1, 2]"))).spec
    plan = compile_spec(spec)
    assert [r.slug for r in plan.runs] == [
        "cnn@std@s0",
        "cnn@std@s1",
        "cnn@std@s2",
        "cnn@madry@s0",
        "cnn@madry@s1",
        "cnn@madry@s2",
    ]
    assert len({r.id for r in plan.runs}) == 6


def test_sweeps_expand_and_name_runs(write_spec):
    text = BASE.replace("eps: 0.1, step_size: 0.025", "eps: [0.05, 0.1], step_size: eps/4")
    plan = compile_spec(load_spec(write_spec(text), ["recipes.1.steps=[5, 10]"]).spec)
    madry = [r for r in plan.runs if r.recipe.kind == "pgd"]
    assert [r.slug for r in madry] == [
        "cnn@madry[eps=0.05,steps=5]@s0",
        "cnn@madry[eps=0.05,steps=10]@s0",
        "cnn@madry[eps=0.1,steps=5]@s0",
        "cnn@madry[eps=0.1,steps=10]@s0",
    ]
    assert madry[0].recipe.step_size == 0.0125  # eps/4 of its own eps
    assert madry[0].sweep == {"eps": 0.05, "steps": 5}


def test_ids_are_stable_across_processes(write_spec):
    path = write_spec()
    ids = [r.id for r in compile_spec(load_spec(path).spec).runs]
    code = (
        "from runner.spec import load_spec; from runner.compile import compile_spec; "
        f"print(' '.join(r.id for r in compile_spec(load_spec({str(path)!r}).spec).runs))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ids
    assert ids[0].startswith("cnn@std@s0-") and len(ids[0].split("-")[-1]) == 10


def test_training_change_changes_id_but_attack_change_does_not(write_spec):
    base = {r.slug: r for r in compile_spec(load_spec(write_spec()).spec).runs}
    more_epochs = {
        r.slug: r for r in compile_spec(load_spec(write_spec(), ["recipes.1.epochs=2"]).spec).runs
    }
    assert base["cnn@std@s0"].id == more_epochs["cnn@std@s0"].id
    assert base["cnn@madry@s0"].id != more_epochs["cnn@madry@s0"].id
    new_attack = {
        r.slug: r for r in compile_spec(load_spec(write_spec(), ["attacks.1.steps=40"]).spec).runs
    }
    assert new_attack["cnn@madry@s0"].id == base["cnn@madry@s0"].id
    assert new_attack["cnn@madry@s0"].eval_hash != base["cnn@madry@s0"].eval_hash


def test_run_dirnames_are_safe():
    for hostile in [
        "../../etc@x@s0-abc",
        "<script>alert(1)</script>@r@s0-1",
        "a/b\\c@..@s0-2",
        "." * 300,
    ]:
        name = run_dirname(hostile)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and name
        assert len(name) <= 120
