"""Every class of spec error: its message and its line number (no torch needed)."""

from __future__ import annotations

import pytest
from spec_base import BASE

from runner.spec import load_spec


def one(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_base_spec_is_valid(write_spec):
    loaded = load_spec(write_spec())
    assert loaded.spec.recipes[1].kind == "pgd"
    assert loaded.spec.recipes[0].optimizer.lr == 1e-3


def test_scientific_notation_is_a_number(write_spec):
    spec = load_spec(
        write_spec(BASE.replace("epochs: 1}", "epochs: 1, optimizer: {lr: 1e-3}}", 1))
    ).spec
    assert spec.recipes[0].optimizer.lr == pytest.approx(0.001)


def test_unknown_key_did_you_mean(errors_of):
    p = one(errors_of(BASE.replace("epochs: 1}", "epocs: 1}", 1)))
    assert (p.line, p.path) == (8, "recipes.0.epocs")
    assert "unknown key 'epocs'" in p.message and "did you mean 'epochs'" in p.message


def test_unknown_top_level_key(errors_of):
    p = one(errors_of(BASE + "seed: [1]\n"))
    assert (p.line, p.col, p.path) == (13, 1, "seed")
    assert "did you mean 'seeds'" in p.message


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "text"),
    [
        ("dataset: digits", "dataset: digitz", 3, "data.dataset", "did you mean 'digits'"),
        ("arch: small_cnn", "arch: smallcnn", 6, "models.0.arch", "did you mean 'small_cnn'"),
        ("kind: standard", "kind: standart", 8, "recipes.0.kind", "did you mean 'standard'"),
        ("kind: fgsm", "kind: fgm", 11, "attacks.0.kind", "did you mean 'fgsm'"),
        ("norm: linf", "norm: l3", 4, "threat.norm", "'linf' or 'l2'"),
    ],
)
def test_unknown_names(errors_of, old, new, line, path, text):
    p = one(errors_of(BASE.replace(old, new, 1)))
    assert (p.line, p.path) == (line, path)
    assert text in p.message


def test_duplicate_key(errors_of):
    p = one(errors_of(BASE.replace("seeds: [0]", "seeds: [0]\nseeds: [1]")))
    assert p.line == 3 and "duplicate key 'seeds'" in p.message and "line 2" in p.message


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system ['touch /tmp/pwned']", "!custom 3"]
)
def test_tags_are_rejected_never_executed(errors_of, tag, tmp_path):
    p = one(errors_of(BASE.replace("seeds: [0]", f"seeds: {tag}")))
    assert p.line == 2 and "is not allowed" in p.message
    assert not (tmp_path / "pwned").exists()


def test_yaml_syntax_error_has_position(errors_of):
    p = one(errors_of(BASE.replace("seeds: [0]", "seeds: [0")))
    assert "YAML syntax error" in p.message and p.line >= 2


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "text"),
    [
        (
            "step_size: 0.025, steps: 7",
            "step_size: 0.2, steps: 7",
            9,
            "recipes.1.step_size",
            "larger than eps",
        ),
        (
            "step_size: 0.025, steps: 7",
            "step_size: 0.01, steps: 3",
            9,
            "recipes.1.steps",
            "cannot reach the boundary",
        ),
        (
            "eps: 0.1, pixel_range: [0, 1]",
            "eps: 300, pixel_range: [0, 255]",
            4,
            "threat.eps",
            "larger than the pixel range",
        ),
        ("eps: 0.1, pixel", "eps: 8, pixel", 4, "threat.eps", "0-255 units"),
        (
            "steps: 20, step_size: eps/4",
            "steps: 20, step_size: 2*eps",
            12,
            "attacks.1.step_size",
            "larger than eps",
        ),
        (
            "steps: 20, step_size: eps/4",
            "steps: 2, step_size: eps/4",
            12,
            "attacks.1.steps",
            "cannot reach",
        ),
    ],
)
def test_unit_checks(errors_of, old, new, line, path, text):
    p = one(errors_of(BASE.replace(old, new, 1)))
    assert (p.line, p.path) == (line, path)
    assert text in p.message


def test_expressions_resolve(write_spec):
    from runner.compile import compile_spec

    text = BASE.replace("eps: 0.1, pixel", "eps: 8/255, pixel").replace(
        "eps: 0.1, step_size: 0.025", "eps: eps, step_size: eps/4"
    )
    plan = compile_spec(load_spec(write_spec(text)).spec)
    madry = [r for r in plan.runs if r.recipe.kind == "pgd"][0]
    assert madry.recipe.eps == pytest.approx(8 / 255)
    assert madry.recipe.step_size == pytest.approx(2 / 255)
    assert plan.attacks[1].step_size == pytest.approx(2 / 255)


@pytest.mark.parametrize("bad", ["__import__('os').getcwd()", "eps**2", "x/4", "1/0"])
def test_expressions_are_never_evaluated_as_python(errors_of, bad):
    p = one(errors_of(BASE.replace("step_size: eps/4", f'step_size: "{bad}"')))
    assert p.path == "attacks.1.step_size" and p.line == 12


def test_all_errors_at_once(errors_of):
    text = BASE.replace("dataset: digits", "dataset: digitz").replace("epochs: 1}", "epocs: 1}", 1)
    text = text.replace("kind: fgsm", "kind: fgm")
    problems = errors_of(text)
    assert [p.line for p in problems] == [3, 8, 11]


def test_missing_required(errors_of):
    p = one(errors_of(BASE.replace("threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}\n", "")))
    assert p.path == "threat" and "required" in p.message


def test_duplicate_names(errors_of):
    p = one(errors_of(BASE.replace("name: madry", "name: std")))
    assert p.path == "recipes.1.name" and "unique" in p.message


def test_art_engine_only_where_ART_has_a_trainer(errors_of, write_spec):
    p = one(
        errors_of(
            BASE.replace("kind: standard, epochs: 1", "kind: standard, epochs: 1, engine: art")
        )
    )
    assert p.path == "recipes.0.engine" and "ART has no trainer" in p.message
    load_spec(write_spec(BASE.replace("kind: pgd, epochs: 1", "kind: pgd, epochs: 1, engine: art")))


def test_npz_needs_a_path(errors_of):
    p = one(errors_of(BASE.replace("dataset: digits", "dataset: npz")))
    assert p.path == "data.path" and p.line == 3


def test_overrides_are_validated_and_named(errors_of, write_spec):
    loaded = load_spec(write_spec(), ["recipes.0.epochs=3", "seeds=[0, 1]"])
    assert loaded.spec.recipes[0].epochs == 3 and loaded.spec.seeds == [0, 1]
    p = one(errors_of(BASE, ["recipes.1.step_size=0.5"]))
    assert p.source == "override 'recipes.1.step_size=0.5'" and "larger than eps" in p.message
    p = one(errors_of(BASE, ["recipes.7.epochs=3"]))
    assert "does not exist" in p.message
    p = one(errors_of(BASE, ["recipes.0.epocs=3"]))
    assert p.source.startswith("override") and "did you mean 'epochs'" in p.message


def test_missing_file_is_a_clear_error(tmp_path):
    from runner.errors import AdvrunError

    with pytest.raises(AdvrunError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_every_schema_field_has_a_description():
    from runner.spec import Spec

    schema = Spec.model_json_schema()
    missing = []
    for name, model in {"Spec": schema, **schema.get("$defs", {})}.items():
        for field, prop in model.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{field}")
    assert not missing, missing


def test_alias_bomb_is_refused_quickly(errors_of):
    """Nested aliases expand exponentially ("billion laughs"); refuse before constructing."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
        for i in range(1, 9)
    ]
    p = one(errors_of(BASE + "\n".join(lines) + "\n"))
    assert "more than 100000 YAML nodes" in p.message
