"""Cross-field checks of the ``tune:`` block (pure): targets, suite, fields of the target.

Each problem is a ``(key path, message)`` pair, placed at file:line:col by the spec loader.
"""

from __future__ import annotations

import builtins
import copy
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from runner.registry import did_you_mean
from runner.spec.certify import check_certified_goals
from runner.spec.tune import _FIXED, ATTACK_LOSSES, ParamSpec, set_dotted


def _index(items: list[Any], name: str) -> builtins.int | None:
    return next((i for i, it in enumerate(items) if it.name == name), None)


def _field_path(model: type, dotted: str) -> str | None:
    """None if ``dotted`` names a (nested) field of the pydantic model, else what is wrong."""
    from pydantic import BaseModel

    tp: Any = model
    for i, part in enumerate(dotted.split(".")):
        if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
            return f"'{'.'.join(dotted.split('.')[:i])}' has no sub-keys"
        if part not in tp.model_fields:
            fields = list(tp.model_fields)
            return f"has no parameter '{part}'{did_you_mean(part, fields)}; it has: {', '.join(fields)}"
        tp = tp.model_fields[part].annotation
        tp = next(
            (
                a
                for a in getattr(tp, "__args__", ())
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            tp,
        )
    return None


def _range_problems(key: str, p: ParamSpec, where: tuple[Any, ...]) -> Iterator[tuple]:
    if p.categorical is not None:
        if len(set(map(repr, p.categorical))) != len(p.categorical):
            yield (*where, "categorical"), "choices must be distinct"
        if p.log or p.step:
            yield where, "log and step apply to float and int ranges, not to categorical"
        return
    kind = p.kind
    lo, hi = getattr(p, kind)
    if not all(math.isfinite(x) for x in (lo, hi)):
        yield (*where, kind), f"range [{lo}, {hi}] must be finite"
    elif lo >= hi:
        yield (*where, kind), f"low {lo:g} >= high {hi:g}: give [low, high] with low < high"
    if p.log and lo <= 0:
        yield (
            (*where, kind),
            f"a log range must stay above 0, but it starts at {lo:g}; use e.g. [{hi / 100:g}, {hi:g}]",
        )
    if p.log and p.step:
        yield where, "Optuna cannot combine log: true with step; drop one"
    if kind == "int" and p.step is not None and p.step != builtins.int(p.step):
        yield (*where, "step"), "an int range needs a whole-number step"


Problems = Iterator[tuple[tuple[Any, ...], str]]


@dataclass(frozen=True)
class _Target:
    """What a trial changes: the suite attack (attack mode) or the recipe (train mode)."""

    base: Any  # the attack's or recipe's spec
    model_cls: type  # its spec model
    raw: dict[str, Any]  # its fields as given
    section: str  # attack | recipe


def check_tune(spec: Any) -> Problems:
    """Problems of ``spec.tune`` that need the rest of the spec (targets, suite, recipe fields)."""
    t = spec.tune
    if t is None:
        return
    ri = _index(spec.recipes, t.target.recipe)
    yield from _check_names(spec, t, ri)
    suite = [a.name for a in spec.attacks]
    yield from _check_goals(t, suite)
    yield from check_certified_goals(spec, t)
    yield from _check_search(spec, t)
    if ri is None:
        return
    if t.mode == "attack":
        target = yield from _attack_target(spec, t, suite)
    else:
        target = yield from _recipe_target(spec, t, ri)
    if target is None:
        return
    for key, p in t.space.items():
        yield from _space_problems(spec, target, key, p)
    yield from _enqueue_problems(t)


def _check_names(spec: Any, t: Any, ri: builtins.int | None) -> Problems:
    """The target model and recipe exist."""
    if _index(spec.models, t.target.model) is None:
        names = [m.name for m in spec.models]
        yield (
            ("tune", "target", "model"),
            f"no model '{t.target.model}'{did_you_mean(t.target.model, names)}; models: {', '.join(names)}",
        )
    if ri is None:
        names = [r.name for r in spec.recipes]
        yield (
            ("tune", "target", "recipe"),
            f"no recipe '{t.target.recipe}'{did_you_mean(t.target.recipe, names)}; recipes: {', '.join(names)}",
        )


def _check_goals(t: Any, suite: list[str]) -> Problems:
    """Each objective's attack is in the suite and fits the mode."""
    for i, goal in enumerate(t.goals):
        where = ("tune", "objectives", i) if t.objectives else ("tune", "objective")
        if goal.attack is not None and goal.attack not in suite:
            yield (
                (*where, "attack"),
                f"attack '{goal.attack}' is not in the suite{did_you_mean(goal.attack, suite)}; "
                f"attacks: {', '.join(suite) or '(none)'}",
            )
        if goal.metric == "robust_accuracy" and not suite and t.mode == "train":
            yield where, "robust_accuracy needs an attack suite: add attacks: [...] to the spec"
        if t.mode == "attack" and (goal.metric, goal.direction) != ("robust_accuracy", "minimize"):
            yield (
                where,
                "attack mode searches for the strongest attack: its objective is "
                "{minimize: robust_accuracy}",
            )


def _check_search(spec: Any, t: Any) -> Problems:
    """Pruner and sampler fit the number of objectives; the target seed is in the matrix."""
    if t.multi and t.pruner not in (None, "none"):
        yield ("tune", "pruner"), "Optuna cannot prune multi-objective studies; set pruner: none"
    if not t.multi and t.sampler == "nsga2":  # (random search is valid for a front too)
        yield ("tune", "sampler"), "nsga2 is for several objectives; use tpe or random"
    if t.target.seed is not None and t.target.seed not in spec.seeds:
        yield (
            ("tune", "target", "seed"),
            f"seed {t.target.seed} is not one of seeds {spec.seeds}; trials train a run of the matrix",
        )


def _attack_target(spec: Any, t: Any, suite: list[str]) -> Generator[Any, None, _Target | None]:
    """Attack mode: the suite attack searched (None if there is none to search)."""
    from runner.spec.attacks import ATTACK_SPECS

    if t.target.attack is None:
        yield ("tune", "target"), "attack mode needs target.attack: the suite attack to search"
        return None
    ai = _index(spec.attacks, t.target.attack)
    if ai is None:
        yield (
            ("tune", "target", "attack"),
            f"attack '{t.target.attack}' is not in the suite{did_you_mean(t.target.attack, suite)}; "
            f"attacks: {', '.join(suite) or '(none)'}",
        )
        return None
    if t.pruner not in (None, "none"):
        yield ("tune", "pruner"), "attack mode has no epochs to prune; set pruner: none"
    base: Any = spec.attacks[ai]
    return _Target(base, ATTACK_SPECS[base.kind], base.model_dump(exclude_none=True), "attack")


def _recipe_target(spec: Any, t: Any, ri: builtins.int) -> Generator[Any, None, _Target]:
    """Train mode: the target recipe, which must be one run (no sweeps outside tune.space)."""
    from runner.spec.recipes import RECIPE_SPECS, SWEEPABLE

    recipe = spec.recipes[ri]
    if t.target.attack is not None:
        yield ("tune", "target", "attack"), "target.attack is for mode: attack"
    raw = recipe.model_dump(exclude_none=True)
    if t.pruner_name != "none" and recipe.monitor.n == 0 and "monitor.n" not in t.space:
        yield (
            ("tune", "pruner"),
            f"pruning reads the per-epoch validation robust accuracy, but recipes.{ri}.monitor.n "
            "is 0; set it > 0 or pruner: none",
        )
    for key in SWEEPABLE:
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list) and key not in t.space:
            yield (
                ("recipes", ri, *key.split(".")),
                f"the tune target sweeps {key}; a trial is one run: give one value or search "
                f"{key} in tune.space",
            )
    return _Target(recipe, RECIPE_SPECS[recipe.kind], raw, "recipe")


def _space_problems(spec: Any, target: _Target, key: str, p: ParamSpec) -> Problems:
    """One searched parameter: a valid range of a field the target has and may change."""
    where = ("tune", "space", key)
    yield from _range_problems(key, p, where)
    section, base, model_cls = target.section, target.base, target.model_cls
    if key.split(".")[0] == "threat" or (section == "attack" and key in ("eps", "norm")):
        yield (
            where,
            "the evaluation threat model is fixed: searching its eps is degenerate (a larger "
            "eps always wins for the attacker, a smaller one for the defender)",
        )
        return
    if key in _FIXED:
        yield where, f"{_FIXED[key]} cannot be searched"
        return
    if section == "attack" and key == "loss" and "loss" not in model_cls.model_fields:
        if base.kind != "pgd":
            yield where, f"attack kind '{base.kind}' has no loss to search"
        elif p.categorical is None or not set(p.categorical) <= set(ATTACK_LOSSES):
            yield where, f"loss is categorical over {', '.join(ATTACK_LOSSES)} for pgd"
        return
    wrong = _field_path(model_cls, key)
    if wrong:
        yield where, f"{section} kind '{base.kind}' {wrong}"
        return
    yield from _corner_problems(spec, target, key, p, where)


def _corner_problems(
    spec: Any, target: _Target, key: str, p: ParamSpec, where: tuple[Any, ...]
) -> Problems:
    """Each end of the range must make a valid target (and a training eps a sound budget)."""
    from runner import expr
    from runner.spec.budget import check_eps

    threat_eps = expr.evaluate(spec.threat.eps)
    lo, hi = spec.threat.pixel_range
    for value in p.corners():
        cand = copy.deepcopy(target.raw)
        set_dotted(cand, key, value)
        try:
            target.model_cls.model_validate(cand)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            yield where, f"{value!r} is not a valid {key}: {msg}"
            break
        if key == "eps" and target.section == "recipe":
            yield from (
                (where, f"at {value!r}: {m}")
                for _, m in check_eps(expr.evaluate(value, threat_eps), lo, hi, where)
            )


def _enqueue_problems(t: Any) -> Problems:
    """Trials queued by hand name searched parameters, with values inside their ranges."""
    for j, params in enumerate(t.enqueue):
        for key, value in params.items():
            p = t.space.get(key)
            if p is None:
                yield (
                    ("tune", "enqueue", j, key),
                    f"'{key}' is not in tune.space{did_you_mean(key, list(t.space))}",
                )
            elif p.categorical is not None and value not in p.categorical:
                yield ("tune", "enqueue", j, key), f"{value!r} is not one of {p.categorical}"
            elif p.categorical is None:
                a, b = p.corners()
                if isinstance(value, (bool, str)) or not a <= value <= b:
                    yield ("tune", "enqueue", j, key), f"{value!r} is outside [{a}, {b}]"
