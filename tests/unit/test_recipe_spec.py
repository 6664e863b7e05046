"""The recipe family in the spec: every parameter validated at its line, defaults resolved.

No torch: these run through load_spec / compile_spec and `advrun validate` only.
"""

from __future__ import annotations

import pytest
from spec_base import BASE

from runner.catalog import RECIPES
from runner.cli import main
from runner.compile import compile_spec
from runner.spec import RECIPE_SPECS, load_spec

POISON = "poisoning: {trigger: pattern, target: 0, fraction: 0.1}\n"


def with_recipe(recipe: str, extra: str = "") -> str:
    """BASE plus one recipe as recipes.2 on line 10 (and top-level blocks at the end)."""
    return BASE.replace("attacks:\n", f"  - {recipe}\nattacks:\n", 1) + extra


def one(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_every_registered_kind_has_a_spec_and_vice_versa():
    assert set(RECIPES.names()) == set(RECIPE_SPECS)
    assert {"fgsm_augment", "pgd", "fgsm_rs", "trades", "mart", "backdoor_mitigation"} <= set(
        RECIPES.names()
    )


@pytest.mark.parametrize(
    "recipe",
    [
        "{name: r, kind: fgsm_augment, ratio: 0.5}",
        "{name: r, kind: fgsm_rs}",
        "{name: r, kind: trades, beta: 6}",
        "{name: r, kind: mart, beta: 0}",
        "{name: r, kind: fgsm_augment, engine: art, ratio: 1}",
        "{name: r, kind: fgsm_rs, engine: art, optimizer: {name: sgd, lr: 0.05}}",
        "{name: r, kind: trades, engine: art, steps: 10, step_size: eps/4}",
        "{name: r, kind: pgd, amp: bf16, channels_last: true}",
        "{name: r, kind: pgd, eps_warmup_epochs: 3, optimizer: {name: adamw, weight_decay: 5e-4}}",
        "{name: r, kind: standard, optimizer: {name: sgd, nesterov: true}, schedule: {name: onecycle}}",
    ],
)
def test_valid_recipes(write_spec, recipe):
    load_spec(write_spec(with_recipe(recipe)))


def test_backdoor_mitigation_is_valid_with_a_poisoning_block(write_spec):
    spec = load_spec(
        write_spec(with_recipe("{name: r, kind: backdoor_mitigation, fraction: 0.3}", POISON))
    ).spec
    assert spec.poisoning.trigger == "pattern" and spec.recipes[2].fraction == 0.3


@pytest.mark.parametrize(
    ("recipe", "path", "text"),
    [
        ("{name: r, kind: fgsm_augment, ratio: 0}", "recipes.2.ratio", "must be in (0, 1]"),
        ("{name: r, kind: fgsm_augment, ratio: 1.5}", "recipes.2.ratio", "must be in (0, 1]"),
        ("{name: r, kind: fgsm_augment, ratio: [0.5, 2]}", "recipes.2.ratio", "ratio 2"),
        ("{name: r, kind: trades, beta: -1}", "recipes.2.beta", "beta -1 must be >= 0"),
        ("{name: r, kind: mart, beta: [1, -0.5]}", "recipes.2.beta", "beta -0.5 must be >= 0"),
        ("{name: r, kind: trades, step_size: 0.2}", "recipes.2.step_size", "larger than eps"),
        ("{name: r, kind: mart, steps: 2, step_size: 0.01}", "recipes.2.steps", "cannot reach"),
        ("{name: r, kind: fgsm_rs, alpha: 0}", "recipes.2.alpha", "must be in (0, 2*eps]"),
        ("{name: r, kind: fgsm_rs, alpha: 3*eps}", "recipes.2.alpha", "corner"),
        ("{name: r, kind: fgsm_rs, eps: 25}", "recipes.2.eps", "0-255 units"),
        ("{name: r, kind: fgsm_rs, overfit_drop: 0}", "recipes.2.overfit_drop", "greater than 0"),
        (
            "{name: r, kind: fgsm_rs, monitor: {n: 0}}",
            "recipes.2.overfit_drop",
            "validation is off",
        ),
        ("{name: r, kind: fgsm_rs, overfit_gap: 1.5}", "recipes.2.overfit_gap", "less than or"),
        (
            "{name: r, kind: fgsm_augment, overfit_gap: 0.3}",
            "recipes.2.overfit_gap",
            "set overfit_drop",
        ),
        (
            "{name: r, kind: n_fgsm, overfit_drop: null, overfit_gap: 0.2}",
            "recipes.2.overfit_gap",
            "the catastrophic-overfitting guard, which is off here",
        ),
        ("{name: r, kind: backdoor_mitigation}", "recipes.2.kind", "add a poisoning: block"),
        ("{name: r, kind: backdoor_mitigation, fraction: 0}", "recipes.2.fraction", "greater"),
        ("{name: r, kind: standard, amp: fp16}", "recipes.2.amp", "'off' or 'bf16'"),
        ("{name: r, kind: standard, optimizer: {lr: 0}}", "recipes.2.optimizer.lr", "positive"),
        ("{name: r, kind: standard, epochs: 0}", "recipes.2.epochs", "at least 1"),
        ("{name: r, kind: trades, ratio: 0.5}", "recipes.2.ratio", "unknown key 'ratio'"),
        ("{name: r, kind: fgsm_rs, steps: 3}", "recipes.2.steps", "unknown key 'steps'"),
    ],
)
def test_bad_parameters_are_located(errors_of, recipe, path, text):
    p = one(errors_of(with_recipe(recipe)))
    assert (p.line, p.path) == (10, path), str(p)
    assert text in p.message, p.message


def test_step_larger_than_eps_is_fine_for_fgsm_rs(write_spec):
    # the paper's step is 1.25*eps: the pgd rule "step_size <= eps" must not apply here
    plan = compile_spec(load_spec(write_spec(with_recipe("{name: r, kind: fgsm_rs}"))).spec)
    run = next(r for r in plan.runs if r.recipe.kind == "fgsm_rs")
    assert run.recipe.eps == pytest.approx(0.1)
    assert run.recipe.alpha == pytest.approx(0.125)  # 1.25 * the recipe eps
    assert run.recipe.schedule.name == "cyclic"  # the paper's default
    assert run.recipe.overfit_drop == pytest.approx(0.2)


def test_alpha_follows_the_recipe_eps_in_a_sweep(write_spec):
    text = with_recipe("{name: r, kind: fgsm_rs, eps: [0.05, 0.1], alpha: eps}")
    plan = compile_spec(load_spec(write_spec(text)).spec)
    alphas = [r.recipe.alpha for r in plan.runs if r.recipe.kind == "fgsm_rs"]
    assert alphas == pytest.approx([0.05, 0.1])


def test_ratio_and_beta_sweep(write_spec):
    text = with_recipe("{name: t, kind: trades, beta: [1, 6]}")
    text = text.replace(
        "attacks:\n", "  - {name: f, kind: fgsm_augment, ratio: [0.5, 1]}\nattacks:\n"
    )
    slugs = [r.slug for r in compile_spec(load_spec(write_spec(text)).spec).runs]
    assert "cnn@t[beta=1]@s0" in slugs and "cnn@t[beta=6]@s0" in slugs
    assert "cnn@f[ratio=0.5]@s0" in slugs and "cnn@f[ratio=1]@s0" in slugs


@pytest.mark.parametrize("kind", ["standard", "mart", "backdoor_mitigation"])
def test_kinds_without_an_art_trainer_reject_engine_art(errors_of, kind):
    p = one(errors_of(with_recipe(f"{{name: r, kind: {kind}, engine: art}}", POISON)))
    assert (
        p.path == "recipes.2.engine" and f"ART has no trainer for recipe kind '{kind}'" in p.message
    )
    assert "fgsm_augment, pgd, fgsm_rs, trades" in p.message


@pytest.mark.parametrize(
    ("recipe", "path", "text"),
    [
        ("{name: r, kind: fgsm_rs, engine: art, alpha: eps}", "recipes.2.alpha", "1.25*eps"),
        (
            "{name: r, kind: pgd, engine: art, eps_warmup_epochs: 2}",
            "recipes.2.eps_warmup_epochs",
            "warm-up",
        ),
        ("{name: r, kind: trades, engine: art, amp: bf16}", "recipes.2.amp", "native engine only"),
    ],
)
def test_art_engine_limits(errors_of, recipe, path, text):
    p = one(errors_of(with_recipe(recipe)))
    assert p.path == path and text in p.message, str(p)


def test_art_trainers_that_attack_in_linf_only(errors_of):
    text = with_recipe("{name: r, kind: fgsm_rs, engine: art}").replace("norm: linf", "norm: l2")
    text = text.replace("eps: 0.1, step_size: 0.025", "eps: 0.5, step_size: 0.1")
    problems = [p for p in errors_of(text) if p.path == "recipes.2.engine"]
    assert problems and "L-inf only" in problems[0].message


@pytest.mark.parametrize(
    ("block", "path", "text"),
    [
        ("poisoning: {fraction: 0}", "poisoning.fraction", "greater than 0"),
        ("poisoning: {fraction: 1}", "poisoning.fraction", "less than 1"),
        ("poisoning: {target: -1}", "poisoning.target", "greater than or equal to 0"),
        ("poisoning: {trigger: square}", "poisoning.trigger", "'pattern' or 'pixel'"),
        ("poisoning: {pixel_value: 2}", "poisoning.pixel_value", "outside pixel_range"),
        ("poisoning: {distance: 0}", "poisoning.distance", "greater than or equal to 1"),
        ("poisoning: {fractoin: 0.1}", "poisoning.fractoin", "did you mean 'fraction'"),
    ],
)
def test_poisoning_block_errors(errors_of, block, path, text):
    p = one(errors_of(BASE + block + "\n"))
    assert (p.line, p.path) == (13, path) and text in p.message, str(p)


def test_asr_is_a_reserved_attack_name_under_poisoning(errors_of):
    p = one(errors_of(BASE.replace("name: fgsm,", "name: asr,") + POISON))
    assert p.path == "attacks.0.name" and "reserved" in p.message


def test_poisoning_changes_the_run_ids(write_spec):
    plain = compile_spec(load_spec(write_spec(BASE)).spec).runs
    poisoned = compile_spec(load_spec(write_spec(BASE + POISON, "p.yaml")).spec).runs
    assert poisoned[0].poisoning.fraction == 0.1
    assert {r.id for r in plain}.isdisjoint({r.id for r in poisoned})


def test_validate_prints_all_recipe_errors_at_once(write_spec, capsys):
    text = with_recipe("{name: r, kind: trades, beta: -1}")
    text = text.replace("attacks:\n", "  - {name: f, kind: fgsm_augment, ratio: 3}\nattacks:\n")
    assert main(["validate", str(write_spec(text))]) == 2
    err = capsys.readouterr().err
    assert "2 errors" in err and ":10:" in err and ":11:" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["recipes.yaml", "poisoning.yaml"])
def test_example_specs_are_valid(name):
    from pathlib import Path

    spec = load_spec(Path(__file__).resolve().parents[2] / "specs" / name).spec
    assert {r.kind for r in spec.recipes} >= {"standard"}


# -- the recipes of issue 22: awp, ema, free, n_fgsm, grad_align ------------------------------
@pytest.mark.parametrize(
    "recipe",
    [
        "{name: r, kind: pgd, awp: {gamma: 0.01}}",
        "{name: r, kind: trades, awp: {}, ema: {decay: 0.995, warmup: 0.5}}",
        "{name: r, kind: pgd, engine: art, awp: {gamma: 0.01, warmup_epochs: 0}}",
        "{name: r, kind: mart, ema: {buffers: average, ramp: false}}",
        "{name: r, kind: free, epochs: 8, m: 4}",
        "{name: r, kind: n_fgsm, clip: eps}",
        "{name: r, kind: grad_align, lambda: [0, 0.2], random_start: true}",
        "{name: r, kind: fgsm_rs, random_start: false}",
    ],
)
def test_valid_recipes_of_issue_22(write_spec, recipe):
    load_spec(write_spec(with_recipe(recipe)))


@pytest.mark.parametrize(
    ("recipe", "path", "at", "text"),
    [
        (
            "{name: r, kind: pgd, awp: {gamma: 0}}",
            "recipes.2.awp.gamma",
            "0}}",
            "must be in (0, 1]",
        ),
        ("{name: r, kind: trades, awp: {gamma: 2}}", "recipes.2.awp.gamma", "2}}", "(0, 1]"),
        (
            "{name: r, kind: pgd, epochs: 3, awp: {warmup_epochs: 3}}",
            "recipes.2.awp.warmup_epochs",
            "3}}",
            "never be perturbed",
        ),
        ("{name: r, kind: mart, awp: {}}", "recipes.2.awp", "awp", "option of: pgd, trades"),
        (
            "{name: r, kind: pgd, ema: {decay: 1}}",
            "recipes.2.ema.decay",
            "1}}",
            "must be in (0, 1)",
        ),
        (
            "{name: r, kind: pgd, ema: {decay: 0}}",
            "recipes.2.ema.decay",
            "0}}",
            "must be in (0, 1)",
        ),
        ("{name: r, kind: pgd, ema: {warmup: -1}}", "recipes.2.ema.warmup", "-1}}", ">= 0"),
        ("{name: r, kind: pgd, ema: {warmup: 10}}", "recipes.2.ema.warmup", "10}}", "only copy"),
        ("{name: r, kind: pgd, engine: art, ema: {}}", "recipes.2.ema", "{}}", "native engine"),
        ("{name: r, kind: free, m: 0}", "recipes.2.m", "0}", "must be in 1..100"),
        ("{name: r, kind: free, m: 101}", "recipes.2.m", "101}", "must be in 1..100"),
        ("{name: r, kind: free, m: [4, 0]}", "recipes.2.m", "[4", "m 0 must be in 1..100"),
        (
            "{name: r, kind: pgd, awp: {gamma: [0.01, 3]}}",
            "recipes.2.awp.gamma",
            "[0.01",
            "awp.gamma 3 must be",
        ),
        (
            "{name: r, kind: pgd, ema: {decay: [0.99, 1.5]}}",
            "recipes.2.ema.decay",
            "[0.99",
            "ema.decay 1.5 must be",
        ),
        ("{name: r, kind: free, step: 3*eps}", "recipes.2.step", "3*eps", "(0, 2*eps]"),
        (
            "{name: r, kind: free, eps_warmup_epochs: 1}",
            "recipes.2.eps_warmup_epochs",
            "1}",
            "no eps warm-up",
        ),
        ("{name: r, kind: n_fgsm, noise: 5*eps}", "recipes.2.noise", "5*eps", "[0, 4*eps]"),
        ("{name: r, kind: n_fgsm, alpha: 0}", "recipes.2.alpha", "0}", "(0, 2*eps]"),
        ("{name: r, kind: grad_align, lambda: -1}", "recipes.2.lambda", "-1}", "[0, 100]"),
        ("{name: r, kind: grad_align, lambda: [0.2, 500]}", "recipes.2.lambda", "[0.2", "500"),
        ("{name: r, kind: grad_align, lamda: 1}", "recipes.2.lamda", "lamda", "'lambda'"),
        (
            "{name: r, kind: fgsm_rs, engine: art, random_start: false}",
            "recipes.2.random_start",
            "false",
            "always starts from a random point",
        ),
        (
            "{name: r, kind: grad_align, monitor: {n: 0}}",
            "recipes.2.overfit_drop",
            "{name",
            "validation is off",
        ),
        (
            "{name: r, kind: fgsm_augment, overfit_drop: 0.2, monitor: {n: 0}}",
            "recipes.2.overfit_drop",
            "0.2",
            "validation is off",
        ),
    ],
)
def test_bad_options_of_issue_22_are_located(errors_of, recipe, path, at, text):
    # line 10 is "  - {recipe}": the column is where ``at`` starts in it
    p = one(errors_of(with_recipe(recipe)))
    assert (p.line, p.col, p.path) == (10, 5 + recipe.index(at), path), str(p)
    assert text in p.message, p.message


def test_free_replays_each_batch_over_fewer_passes(write_spec):
    text = with_recipe("{name: r, kind: free, epochs: 10, m: 4}")
    (run,) = [
        r for r in compile_spec(load_spec(write_spec(text)).spec).runs if r.recipe.kind == "free"
    ]
    assert run.recipe.loop_epochs() == 3  # ceil(10 / 4), as the paper's code
    assert run.recipe.step == pytest.approx(0.1)  # 'eps', resolved to pixel units


def test_off_options_leave_run_files_and_ids_as_before(write_spec):
    plain = compile_spec(load_spec(write_spec(BASE)).spec).runs[1]
    assert "ema" not in plain.to_json()["recipe"] and "awp" not in plain.hyperparameters
    text = BASE.replace("steps: 7}", "steps: 7, ema: {}}")
    averaged = compile_spec(load_spec(write_spec(text, "e.yaml")).spec).runs[1]
    assert averaged.hyperparameters["ema"]["decay"] == 0.999 and averaged.id != plain.id


def test_grad_align_lambda_is_written_as_lambda(write_spec):
    text = with_recipe("{name: g, kind: grad_align, lambda: [0.1, 0.3]}")
    runs = [r for r in compile_spec(load_spec(write_spec(text)).spec).runs if r.recipe.name == "g"]
    assert [r.slug for r in runs] == ["cnn@g[lambda=0.1]@s0", "cnn@g[lambda=0.3]@s0"]
    assert runs[1].hyperparameters["lambda"] == 0.3 and runs[1].recipe.lambda_ == 0.3


def test_awp_gamma_ema_decay_and_free_m_sweep(write_spec):
    text = with_recipe(
        "{name: a, kind: pgd, awp: {gamma: [0.005, 0.01]}, ema: {decay: [0.99, 0.999]}}"
    ).replace("attacks:\n", "  - {name: f, kind: free, epochs: 8, m: [2, 4]}\nattacks:\n")
    runs = compile_spec(load_spec(write_spec(text)).spec).runs
    awp = {r.slug: (r.recipe.awp.gamma, r.recipe.ema.decay) for r in runs if r.recipe.name == "a"}
    assert awp == {
        "cnn@a[gamma=0.005,decay=0.99]@s0": (0.005, 0.99),
        "cnn@a[gamma=0.005,decay=0.999]@s0": (0.005, 0.999),
        "cnn@a[gamma=0.01,decay=0.99]@s0": (0.01, 0.99),
        "cnn@a[gamma=0.01,decay=0.999]@s0": (0.01, 0.999),
    }
    free = {r.slug: r.recipe.loop_epochs() for r in runs if r.recipe.name == "f"}
    assert free == {"cnn@f[m=2]@s0": 4, "cnn@f[m=4]@s0": 2}  # ceil(8 / m) passes each
    assert len({r.id for r in runs}) == len(runs)


def test_ema_warmup_is_checked_against_the_largest_m_of_a_sweep(errors_of):
    # m 8 leaves ceil(8 / 8) = 1 loop epoch: a warm-up of 1 epoch would only copy the weights
    p = one(errors_of(with_recipe("{name: r, kind: free, epochs: 8, m: [2, 8], ema: {warmup: 1}}")))
    assert p.path == "recipes.2.ema.warmup" and "only copy" in p.message, str(p)


def test_plan_shows_the_values_a_sweep_of_the_new_options_changes(write_spec, capsys, tmp_path):
    text = with_recipe("{name: a, kind: pgd, awp: {gamma: [0.005, 0.01]}, ema: {decay: 0.99}}")
    text = text.replace("attacks:\n", "  - {name: f, kind: free, m: 4}\nattacks:\n")
    assert main(["plan", str(write_spec(text)), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "awp(gamma=0.005) ema(decay=0.99)" in out and "awp(gamma=0.01) ema(decay=0.99)" in out
    assert " m=4 " in out
