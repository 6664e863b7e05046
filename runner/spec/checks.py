"""Checks that need several fields at once: units, budgets, step sizes, unique names.

Each returns ``(key path, message)`` pairs so the loader can place them at file:line:col.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner import expr
from runner.catalog import DATASETS
from runner.registry import did_you_mean
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
    p = spec.poisoning
    defenses = len(p.defense) if p is not None and isinstance(p.defense, list) else 1
    return len(spec.models) * per_model * len(spec.seeds) * max(defenses, 1)


ROBUSTBENCH = "robustbench:"
# RobustBench's BenchmarkDataset and ThreatModel values (robustbench/model_zoo/enums.py)
RB_DATASETS = ("cifar10", "cifar100", "imagenet")
RB_THREATS = ("Linf", "L2", "corruptions", "corruptions_3d")
RB_KWARGS = {"dataset": RB_DATASETS, "threat_model": RB_THREATS, "model_dir": None}


def _robustbench(
    model: Any, where: tuple[Any, ...], pixel_range: tuple[float, float]
) -> Iterator[Problem]:
    """A zoo model: its kwargs are RobustBench's names; it normalises [0, 1] input itself."""
    if not model.arch.startswith(ROBUSTBENCH):
        return
    if not model.arch[len(ROBUSTBENCH) :]:
        yield (
            (*where, "arch"),
            "name the zoo model: robustbench:<model name>, e.g. robustbench:Standard",
        )
    if tuple(pixel_range) != (0.0, 1.0):
        yield (
            ("threat", "pixel_range"),
            f"'{model.arch}' takes pixels in [0, 1], as RobustBench evaluates it; set "
            "threat.pixel_range: [0, 1] (eps in those units, e.g. 8/255)",
        )
    if model.normalize is not None:
        yield (
            (*where, "normalize"),
            f"'{model.arch}' normalises its input inside the model as RobustBench built it; "
            "normalize here would apply it twice: remove models[].normalize",
        )
    for key, value in model.kwargs.items():
        if key not in RB_KWARGS:
            yield (
                (*where, "kwargs", key),
                f"a RobustBench model takes kwargs {', '.join(RB_KWARGS)}, not '{key}'"
                + did_you_mean(key, list(RB_KWARGS)),
            )
        elif RB_KWARGS[key] is not None and value not in RB_KWARGS[key]:
            yield (
                (*where, "kwargs", key),
                f"RobustBench's {key} is one of {', '.join(RB_KWARGS[key])}, not {value!r}"
                + did_you_mean(str(value), list(RB_KWARGS[key])),
            )


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
    for i, model in enumerate(spec.models):
        problems += _robustbench(model, ("models", i), spec.threat.pixel_range)
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
