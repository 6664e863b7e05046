"""Checks that need several fields at once: units, budgets, step sizes, unique names.

Each returns ``(key path, message)`` pairs so the loader can place them at file:line:col.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner import expr
from runner.catalog import DATASETS
from runner.spec.attacks import check_attacks
from runner.spec.budget import check_eps
from runner.spec.certify import check as check_certify
from runner.spec.core import Spec
from runner.spec.gate_check import check as check_gate
from runner.spec.poisoning import check as check_poisoning
from runner.spec.recipes import SWEEPABLE
from runner.spec.transforms import check as check_transforms
from runner.spec.tune_check import check_tune

Problem = tuple[tuple[Any, ...], str]


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _unique(items: list[Any], section: str) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in seen:
            yield (
                (section, i, "name"),
                (
                    f"name '{item.name}' is already used by {section}.{seen[item.name]}; names must be unique"
                ),
            )
        seen.setdefault(item.name, i)


MAX_RUNS = 10_000  # models x recipe sweep values x seeds; a few sweep lists multiply quickly


def count_runs(spec: Spec) -> int:
    """How many runs the spec compiles into (without compiling it)."""
    per_model = 0
    for recipe in spec.recipes:
        combos = 1
        for key in SWEEPABLE:
            obj: Any = recipe
            for part in key.split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, list):
                combos *= len(obj)
        per_model += combos
    return len(spec.models) * per_model * len(spec.seeds)


def check_spec(spec: Spec) -> list[Problem]:
    """All cross-field problems of a structurally valid spec."""
    problems: list[Problem] = []
    n_runs = count_runs(spec)
    if n_runs > MAX_RUNS:
        return [
            (
                ("recipes",),
                f"the spec expands into {n_runs:,} runs (models x sweep values x seeds), more "
                f"than the limit of {MAX_RUNS:,}; sweep fewer values or split it into several specs",
            )
        ]
    lo, hi = spec.threat.pixel_range
    threat_eps = expr.evaluate(spec.threat.eps)
    problems += check_eps(threat_eps, lo, hi, ("threat", "eps"))

    source = DATASETS.load(spec.data.dataset)
    need = source.needs
    if need and not getattr(spec.data, need):
        problems.append((("data", need), f"data set '{spec.data.dataset}' needs data.{need}"))
    problems += source.check(spec.data)

    problems += _unique(spec.models, "models")
    problems += _unique(spec.recipes, "recipes")
    problems += _unique(spec.attacks, "attacks")
    for i, attack in enumerate(spec.attacks):
        if attack.name == "clean":
            problems.append(
                (
                    ("attacks", i, "name"),
                    "'clean' is reserved for clean accuracy; pick another name",
                )
            )

    for i, recipe in enumerate(spec.recipes):
        problems += recipe.problems(("recipes", i), spec, threat_eps)

    for i, attack in enumerate(spec.attacks):
        if attack.eps is not None:
            eps = expr.evaluate(attack.eps, threat_eps)
            problems += check_eps(eps, lo, hi, ("attacks", i, "eps"))
    problems += check_attacks(spec)
    problems += check_tune(spec)
    problems += check_gate(spec)
    problems += check_poisoning(spec)
    problems += check_transforms(spec)
    problems += check_certify(spec)
    # de-duplicate (sweeps can repeat the same message)
    return list(dict.fromkeys(problems))
