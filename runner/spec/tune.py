"""The ``tune:`` block: an Optuna search over a recipe's (or an attack's) hyperparameters.

Pure: no optuna here. :func:`check` yields the cross-field problems so they print at file:line:col.
"""

from __future__ import annotations

import builtins
import copy
import math
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from runner.registry import did_you_mean
from runner.spec.base import StrictModel

Scalar = builtins.int | builtins.float | str | bool
Metric = Literal["clean_accuracy", "robust_accuracy"]
_PARAM_KEYS = ("float", "int", "categorical", "log", "step")
# Keys a space may never move: identity, or the fixed evaluation threat model.
_FIXED = {"name": "the run's name", "kind": "the recipe kind"}


class ParamSpec(StrictModel):
    """One searched parameter: ``{float: [lo, hi]}``, ``{int: [lo, hi]}`` or ``{categorical: [...]}``."""

    float: tuple[builtins.float, builtins.float] | None = Field(
        None, description="a real range [low, high] (pixel units for eps and step sizes)"
    )
    int: tuple[builtins.int, builtins.int] | None = Field(
        None, description="a whole-number range [low, high], both included"
    )
    categorical: list[Scalar] | None = Field(
        None, min_length=1, description="a list of choices, e.g. [sgd, adam]"
    )
    log: bool = Field(False, description="sample on a log scale (low must be > 0)")
    step: builtins.float | None = Field(
        None, gt=0, description="discretisation step of the range (not with log)"
    )

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for k in v:
                if k not in _PARAM_KEYS:
                    raise ValueError(
                        f"unknown key '{k}'{did_you_mean(str(k), list(_PARAM_KEYS))}; a parameter is "
                        "{float: [low, high]}, {int: [low, high]} or {categorical: [a, b]}, "
                        "optionally with log: true or step: S"
                    )
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        given = [k for k in ("float", "int", "categorical") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of float: [low, high], int: [low, high] or categorical: [...]"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("float", "int", "categorical") if getattr(self, k) is not None)

    def corners(self) -> list[Any]:
        """The values that bound what a trial may see (checked against the target at load time)."""
        if self.categorical is not None:
            return list(self.categorical)
        lo, hi = self.float if self.float is not None else self.int  # type: ignore[misc]
        return [lo, hi]


class TargetSpec(StrictModel):
    """Which run of the matrix a study tunes."""

    model: str = Field(..., description="a name from models")
    recipe: str = Field(..., description="a name from recipes")
    seed: builtins.int | None = Field(
        None, description="training seed of every trial (default: the first of seeds)"
    )
    attack: str | None = Field(
        None, description="mode attack: the suite attack whose parameters are searched"
    )


class ObjectiveSpec(StrictModel):
    """What a trial scores: ``{maximize: robust_accuracy, attack: pgd20}``."""

    maximize: Metric | None = Field(None, description="clean_accuracy or robust_accuracy")
    minimize: Metric | None = Field(None, description="clean_accuracy or robust_accuracy")
    attack: str | None = Field(
        None,
        description="robust_accuracy under this suite attack (default: the worst case over the "
        "suite at the threat eps)",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        if isinstance(v, str):  # 'maximize robust_accuracy' as in objectives: [...]
            parts = v.split()
            if len(parts) != 2 or parts[0] not in ("maximize", "minimize"):
                raise ValueError(
                    f"'{v}' is not an objective: write 'maximize clean_accuracy' or "
                    "{maximize: robust_accuracy, attack: NAME}"
                )
            return {parts[0]: parts[1]}
        return v

    @model_validator(mode="after")
    def _one_direction(self) -> ObjectiveSpec:
        if (self.maximize is None) == (self.minimize is None):
            raise ValueError("give exactly one of maximize: METRIC or minimize: METRIC")
        return self

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize is not None else "minimize"

    @property
    def metric(self) -> str:
        return self.maximize or self.minimize  # type: ignore[return-value]

    @property
    def label(self) -> str:
        """Its name in summaries: clean_accuracy, robust_accuracy or robust_accuracy@ATTACK."""
        return self.metric + (f"@{self.attack}" if self.attack else "")


class TuneSpec(StrictModel):
    """An Optuna study over one run of the matrix (training hyperparameters or attack strength)."""

    mode: Literal["train", "attack"] = Field(
        "train",
        description="train: search the target recipe's hyperparameters; attack: search the "
        "target attack's parameters against the trained target model (the strongest attack)",
    )
    target: TargetSpec = Field(..., description="which run of the matrix to tune")
    space: dict[str, ParamSpec] = Field(
        ...,
        min_length=1,
        description="parameter (dotted recipe or attack key, e.g. eps, optimizer.lr) -> range",
    )
    objective: ObjectiveSpec | None = Field(
        None, description="one objective, e.g. {maximize: robust_accuracy, attack: pgd20}"
    )
    objectives: list[ObjectiveSpec] | None = Field(
        None,
        min_length=2,
        description="several objectives (a Pareto front), e.g. "
        "[maximize clean_accuracy, maximize robust_accuracy]",
    )
    trials: builtins.int = Field(
        20, ge=1, le=100000, description="finished (complete or pruned) trials the study holds"
    )
    pruner: Literal["median", "hyperband", "none"] | None = Field(
        None,
        description="stop hopeless trials early on their per-epoch validation robust accuracy "
        "(default: median for one objective in train mode, else none)",
    )
    pruner_startup_trials: builtins.int = Field(
        3, ge=0, description="median pruner: finished trials before pruning starts"
    )
    pruner_warmup_epochs: builtins.int = Field(
        1, ge=0, description="median pruner: epochs of each trial never pruned"
    )
    sampler: Literal["tpe", "random", "nsga2"] | None = Field(
        None, description="tpe, random or nsga2 (default: tpe, nsga2 for several objectives)"
    )
    seed: builtins.int = Field(0, description="sampler seed")
    study_name: str | None = Field(
        None,
        min_length=1,
        max_length=120,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Optuna study name (default: the spec name plus a hash of what trials measure)",
    )
    enqueue: list[dict[str, Scalar]] = Field(
        default_factory=list,
        description="parameter sets to try first, e.g. [{eps: 0.1, steps: 7}] (once per study)",
    )

    @field_validator("space")
    @classmethod
    def _keys(cls, v: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for key in v:
            if not key or any(not p for p in key.split(".")):
                raise ValueError(f"'{key}' is not a parameter key; use e.g. eps or optimizer.lr")
        return v

    @model_validator(mode="after")
    def _objective(self) -> TuneSpec:
        both = self.objective is not None and self.objectives is not None
        if both or (self.objective is None and self.objectives is None and self.mode == "train"):
            raise ValueError(
                "give objective: {maximize: robust_accuracy} or objectives: [...] (not both)"
            )
        return self

    @property
    def goals(self) -> list[ObjectiveSpec]:
        if self.objectives:
            return list(self.objectives)
        return [self.objective or ObjectiveSpec(minimize="robust_accuracy")]  # attack-mode default

    @property
    def multi(self) -> bool:
        return len(self.goals) > 1

    @property
    def pruner_name(self) -> str:
        if self.pruner is not None:
            return self.pruner
        return "median" if self.mode == "train" and not self.multi else "none"

    @property
    def sampler_name(self) -> str:
        return self.sampler or ("nsga2" if self.multi else "tpe")


# -- cross-field checks ---------------------------------------------------------------------


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


def set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the mappings on the way."""
    *head, last = dotted.split(".")
    for part in head:
        if not isinstance(d.get(part), dict):
            d[part] = {}
        d = d[part]
    d[last] = value


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


def check(spec: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Problems of ``spec.tune`` that need the rest of the spec (targets, suite, recipe fields)."""
    from runner import expr
    from runner.spec.attacks import ATTACK_SPECS
    from runner.spec.checks import check_eps
    from runner.spec.recipes import RECIPE_SPECS

    t = spec.tune
    if t is None:
        return
    mi = _index(spec.models, t.target.model)
    ri = _index(spec.recipes, t.target.recipe)
    if mi is None:
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
    suite = [a.name for a in spec.attacks]
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
    if t.multi and t.pruner not in (None, "none"):
        yield ("tune", "pruner"), "Optuna cannot prune multi-objective studies; set pruner: none"
    if t.multi and t.sampler == "random":
        pass  # random search is valid for a front
    elif not t.multi and t.sampler == "nsga2":
        yield ("tune", "sampler"), "nsga2 is for several objectives; use tpe or random"
    if t.target.seed is not None and t.target.seed not in spec.seeds:
        yield (
            ("tune", "target", "seed"),
            f"seed {t.target.seed} is not one of seeds {spec.seeds}; trials train a run of the matrix",
        )
    if ri is None:
        return
    recipe = spec.recipes[ri]
    threat_eps = expr.evaluate(spec.threat.eps)
    lo, hi = spec.threat.pixel_range
    if t.mode == "attack":
        if t.target.attack is None:
            yield ("tune", "target"), "attack mode needs target.attack: the suite attack to search"
            return
        ai = _index(spec.attacks, t.target.attack)
        if ai is None:
            yield (
                ("tune", "target", "attack"),
                f"attack '{t.target.attack}' is not in the suite{did_you_mean(t.target.attack, suite)}; "
                f"attacks: {', '.join(suite) or '(none)'}",
            )
            return
        if t.pruner not in (None, "none"):
            yield ("tune", "pruner"), "attack mode has no epochs to prune; set pruner: none"
        base: Any = spec.attacks[ai]
        model_cls: type = ATTACK_SPECS[base.kind]
        raw = base.model_dump(exclude_none=True)
        section = "attack"
    else:
        if t.target.attack is not None:
            yield ("tune", "target", "attack"), "target.attack is for mode: attack"
        base = recipe
        model_cls = RECIPE_SPECS[recipe.kind]
        raw = recipe.model_dump(exclude_none=True)
        section = "recipe"
        if t.pruner_name != "none" and recipe.monitor.n == 0 and "monitor.n" not in t.space:
            yield (
                ("tune", "pruner"),
                f"pruning reads the per-epoch validation robust accuracy, but recipes.{ri}.monitor.n "
                "is 0; set it > 0 or pruner: none",
            )
        from runner.spec.recipes import SWEEPABLE

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

    for key, p in t.space.items():
        where = ("tune", "space", key)
        yield from _range_problems(key, p, where)
        if key.split(".")[0] == "threat" or (section == "attack" and key in ("eps", "norm")):
            yield (
                where,
                "the evaluation threat model is fixed: searching its eps is degenerate (a larger "
                "eps always wins for the attacker, a smaller one for the defender)",
            )
            continue
        if key in _FIXED:
            yield where, f"{_FIXED[key]} cannot be searched"
            continue
        if section == "attack" and key == "loss" and "loss" not in model_cls.model_fields:
            if base.kind != "pgd":
                yield where, f"attack kind '{base.kind}' has no loss to search"
            elif p.categorical is None or not set(p.categorical) <= set(ATTACK_LOSSES):
                yield where, f"loss is categorical over {', '.join(ATTACK_LOSSES)} for pgd"
            continue
        wrong = _field_path(model_cls, key)
        if wrong:
            what = f"{section} kind '{base.kind}'"
            yield where, f"{what} {wrong}"
            continue
        for value in p.corners():  # each end of the range must make a valid target
            cand = copy.deepcopy(raw)
            set_dotted(cand, key, value)
            try:
                model_cls.model_validate(cand)
            except ValidationError as e:
                msg = e.errors()[0]["msg"].removeprefix("Value error, ")
                yield where, f"{value!r} is not a valid {key}: {msg}"
                break
            if key == "eps" and section == "recipe":
                yield from (
                    (where, f"at {value!r}: {m}")
                    for _, m in check_eps(expr.evaluate(value, threat_eps), lo, hi, where)
                )
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


# Losses the attack mode can search for native PGD (see runner.tune.attack).
ATTACK_LOSSES = ("ce", "cw", "dlr")
