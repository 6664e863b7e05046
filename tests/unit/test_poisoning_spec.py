"""The poisoning defenses and the clean-label scenario in the spec: every value validated at its
line, the defense sweep compiled into one run per defense. No torch."""

from __future__ import annotations

import pytest
from spec_base import BASE

from runner.catalog import DEFENSES
from runner.compile import DEFENSE_KEY, compile_spec
from runner.spec import load_spec
from runner.spec.checks import count_runs

# BASE ends on line 12; the poisoning block is line 13, its keys one a line from 14
BLOCK = "poisoning:\n  target: 0\n  fraction: 0.05\n"


def one(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_the_catalog_lists_the_defenses():
    assert DEFENSES.names()[:3] == ["none", "spectral_signatures", "activation_clustering"]


def test_a_defense_sweep_compiles_into_one_run_per_defense(write_spec):
    sweep = "  defense: [none, spectral_signatures, activation_clustering]\n"
    spec = load_spec(write_spec(BASE + BLOCK + sweep)).spec
    runs = compile_spec(spec).runs
    assert count_runs(spec) == len(runs) == 2 * 3  # two recipes x three defenses
    std = [r for r in runs if r.recipe.name == "std"]
    assert [r.poisoning.defense for r in std] == [
        "none", "spectral_signatures", "activation_clustering"
    ]  # fmt: skip
    assert [r.sweep for r in std][1] == {DEFENSE_KEY: "spectral_signatures"}
    assert std[1].slug == "cnn@std[defense=spectral_signatures]@s0"
    assert len({r.id for r in runs}) == 6 and len({r.train_hash for r in runs}) == 6
    # defense: none is the default: its run is the run of the spec without a defense
    plain = compile_spec(load_spec(write_spec(BASE + BLOCK, "p.yaml")).spec).runs
    assert plain[0].train_hash == std[0].train_hash


def test_one_defense_is_not_a_sweep(write_spec):
    runs = compile_spec(load_spec(write_spec(BASE + BLOCK + "  defense: spectral_signatures\n"))
                        .spec).runs  # fmt: skip
    assert (
        len(runs) == 2
        and runs[0].sweep == {}
        and runs[0].poisoning.defense == "spectral_signatures"
    )


@pytest.mark.parametrize(
    ("extra", "line", "path", "text"),
    [
        ("  defense: spectral_signature\n", 16, "poisoning.defense",
         "did you mean 'spectral_signatures'"),
        ("  defense: [none, activaton_clustering]\n", 16, "poisoning.defense.1",
         "did you mean 'activation_clustering'"),
        ("  defense: []\n", 16, "poisoning.defense", "sweeps over nothing"),
        ("  defense: spectral_signatures\n  eps_multiplier: 5\n  expected_fraction: 0.3\n", 17,
         "poisoning.eps_multiplier", "= 1.5 of each class; it must lie in (0, 1)"),
        ("  expected_fraction: 1\n", 16, "poisoning.expected_fraction", "less than 1"),
        ("  expected_fraction: 0\n", 16, "poisoning.expected_fraction", "greater than 0"),
        ("  size_threshold: 0.6\n", 16, "poisoning.size_threshold", "less than or equal to 0.5"),
        ("  dims: 0\n", 16, "poisoning.dims", "greater than or equal to 1"),
        ("  reduce: tsne\n", 16, "poisoning.reduce", "'ica' or 'pca'"),
        ("  source: 0\n", 16, "poisoning.source", "is the target class"),
        ("  perturbation: pgd20\n", 16, "poisoning.perturbation", "clean_label only"),
        ("  scenario: clean_label\n  perturbation: fgsm\n", 17, "poisoning.perturbation",
         "a fgsm attack"),
        ("  scenario: clean_label\n  perturbation: pgd2\n", 17, "poisoning.perturbation",
         "did you mean 'pgd20'"),
        ("  scenario: clean_label\n  source: 3\n", 17, "poisoning.source", "backdoor only"),
        ("  scenario: dirty\n", 16, "poisoning.scenario", "'backdoor' or 'clean_label'"),
    ],
)  # fmt: skip
def test_poisoning_defense_errors_at_their_line(errors_of, extra, line, path, text):
    p = one(errors_of(BASE + BLOCK + extra))
    assert (p.line, p.path) == (line, path) and text in p.message, str(p)
    assert str(p).startswith(f"{p.source}:{line}:"), str(p)


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [
        (BASE + "defense: spectral_signatures\n", 13, 1),  # at the top level: no scenario
        (BASE.replace("kind: standard, epochs: 1}", "kind: standard, epochs: 1, defense: none}"),
         8, 44),
    ],
)  # fmt: skip
def test_a_defense_without_a_poisoning_scenario_says_where_it_goes(errors_of, text, line, col):
    p = one(errors_of(text))
    assert (p.line, p.col) == (line, col), str(p)
    assert "outside the poisoning: block" in p.message and "poisoning: {" in p.message


@pytest.mark.parametrize("name", ["source_accuracy", "filter_recall", "asr_before"])
def test_poisoning_result_names_are_reserved(errors_of, name):
    p = one(errors_of(BASE.replace("name: fgsm,", f"name: {name},") + BLOCK))
    assert p.path == "attacks.0.name" and "reserved for a poisoning result" in p.message


def test_the_example_spec_is_valid():
    from pathlib import Path

    spec = load_spec(Path(__file__).resolve().parents[2] / "specs" / "poisoning-defenses.yaml").spec
    assert spec.poisoning.defenses == ["none", "spectral_signatures", "activation_clustering"]
    assert {r.kind for r in spec.recipes} == {"standard", "backdoor_mitigation"}
