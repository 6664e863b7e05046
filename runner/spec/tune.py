"""The ``tune:`` block: an Optuna search over a recipe's (or an attack's) hyperparameters.

Pure: no optuna here. :func:`check` yields the cross-field problems so they print at file:line:col.
"""

from __future__ import annotations

import builtins
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from runner.registry import did_you_mean
from runner.spec.base import MAX_SEED, Pair, StrictModel

Scalar = builtins.int | builtins.float | str | bool
Metric = Literal["clean_accuracy", "robust_accuracy", "certified_accuracy", "smoothed_accuracy"]
CERTIFIED_METRICS = ("certified_accuracy", "smoothed_accuracy")  # read from the certify block
_PARAM_KEYS = ("float", "int", "categorical", "log", "step")
# Keys a space may never move: identity, or the fixed evaluation threat model.
_FIXED = {"name": "the run's name", "kind": "the recipe kind"}
# Losses the attack mode can search for native PGD (see runner.tune.attack).
ATTACK_LOSSES = ("ce", "cw", "dlr")


class ParamSpec(StrictModel):
    """One searched parameter: ``{float: [lo, hi]}``, ``{int: [lo, hi]}`` or ``{categorical: [...]}``."""

    float: Annotated[tuple[builtins.float, builtins.float], Pair] | None = Field(
        None, description="a real range [low, high] (pixel units for eps and step sizes)"
    )
    int: Annotated[tuple[builtins.int, builtins.int], Pair] | None = Field(
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
        None,
        ge=0,
        le=MAX_SEED,
        description="training seed of every trial (default: the first of seeds)",
    )
    attack: str | None = Field(
        None, description="mode attack: the suite attack whose parameters are searched"
    )


class ObjectiveSpec(StrictModel):
    """What a trial scores: ``{maximize: robust_accuracy, attack: pgd20}``."""

    maximize: Metric | None = Field(
        None,
        description="clean_accuracy, robust_accuracy, certified_accuracy (with radius) or "
        "smoothed_accuracy (randomized smoothing's PREDICT)",
    )
    minimize: Metric | None = Field(
        None, description="clean_accuracy, robust_accuracy, certified_accuracy or smoothed_accuracy"
    )
    attack: str | None = Field(
        None,
        description="robust_accuracy under this suite attack (default: the worst case over the "
        "suite at the threat eps)",
    )
    radius: builtins.float | None = Field(
        None,
        ge=0,
        description="certified_accuracy at this L2 radius (pixel units; one of certify.radii)",
    )
    sigma: builtins.float | Literal["train"] | None = Field(
        None,
        description="certified_accuracy or smoothed_accuracy at this noise level of certify.sigma "
        "(needed when it lists several; 'train': the trial's own training sigma)",
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
        """Its name in summaries: clean_accuracy, robust_accuracy, robust_accuracy@ATTACK,
        certified_accuracy@r=R[sigma=S], smoothed_accuracy[sigma=S]."""
        where = f"@{self.attack}" if self.attack else ""
        if self.radius is not None:
            where += f"@r={self.radius:g}"
        if self.sigma is not None:
            where += f"[sigma={self.sigma:g}]" if self.sigma != "train" else "[sigma=train]"
        return self.metric + where


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
    seed: builtins.int = Field(0, ge=0, le=MAX_SEED, description="sampler seed (0 to 2**32-1)")
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


def set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the mappings on the way."""
    *head, last = dotted.split(".")
    for part in head:
        if not isinstance(d.get(part), dict):
            d[part] = {}
        d = d[part]
    d[last] = value
