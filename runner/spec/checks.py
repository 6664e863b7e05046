"""Checks that need several fields at once: units, budgets, step sizes, unique names.

Each returns ``(key path, message)`` pairs so the loader can place them at file:line:col.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner import expr
from runner.catalog import DATASETS
from runner.spec.attacks import PGDAttack, check_attacks
from runner.spec.core import Spec
from runner.spec.gate import check as check_gate
from runner.spec.poisoning import check as check_poisoning
from runner.spec.recipes import SWEEPABLE, check_recipe
from runner.spec.transforms import check as check_transforms
from runner.spec.tune import check as check_tune

Problem = tuple[tuple[Any, ...], str]


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def check_eps(eps: float, lo: float, hi: float, where: tuple[Any, ...]) -> Iterator[Problem]:
    """An eps must be positive and fit the pixel range; catch 0-255 units on a [0, 1] range."""
    width = hi - lo
    if eps <= 0:
        yield where, f"eps {eps:g} must be positive"
    elif width <= 1 and 1 < eps <= 255:
        yield (
            where,
            (
                f"eps {eps:g} looks like it is in 0-255 units, but pixel_range is [{lo:g}, {hi:g}]; "
                f"write it as {eps:g}/255"
            ),
        )
    elif eps > width:
        yield (
            where,
            (
                f"eps {eps:g} is larger than the pixel range [{lo:g}, {hi:g}]: every image would be "
                "reachable from every other; use a budget well inside the range"
            ),
        )


def check_steps(
    eps: float, step: float, steps: int, where: tuple[Any, ...], iterative: bool = True
) -> Iterator[Problem]:
    """Step sizes that overshoot the ball, or that can never reach its boundary."""
    if step <= 0:
        yield (*where, "step_size"), f"step_size {step:g} must be positive"
        return
    if step > eps:
        yield (
            (*where, "step_size"),
            (
                f"step_size {step:g} is larger than eps {eps:g}: each step overshoots the ball and is "
                "projected back, so the attack jumps between corners; use at most eps (eps/4 is usual)"
            ),
        )
    elif iterative and steps * step < eps * (1 - 1e-9):
        yield (
            (*where, "steps"),
            (
                f"steps x step_size = {steps} x {step:g} = {steps * step:g} < eps {eps:g}: PGD cannot "
                "reach the boundary of the ball; raise steps or step_size (e.g. step_size 2.5*eps/steps)"
            ),
        )


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

    need = DATASETS.get(spec.data.dataset).meta.get("needs")
    if need and not getattr(spec.data, need):
        problems.append((("data", need), f"data set '{spec.data.dataset}' needs data.{need}"))

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
        problems += check_recipe(recipe, ("recipes", i), spec, threat_eps)

    for i, attack in enumerate(spec.attacks):
        where = ("attacks", i)
        eps = threat_eps if attack.eps is None else expr.evaluate(attack.eps, threat_eps)
        if attack.eps is not None:
            problems += check_eps(eps, lo, hi, (*where, "eps"))
        if isinstance(attack, PGDAttack):
            step = expr.evaluate(attack.step_size, eps)
            problems += check_steps(eps, step, attack.steps, where, iterative=attack.steps > 1)
    problems += check_attacks(spec)
    problems += check_tune(spec)
    problems += check_gate(spec)
    problems += check_poisoning(spec)
    problems += check_transforms(spec)
    # de-duplicate (sweeps can repeat the same message)
    return list(dict.fromkeys(problems))
