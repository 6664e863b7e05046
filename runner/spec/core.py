"""The top-level spec: what a user writes in one YAML file.

Its ``recipes`` and ``attacks`` are discriminated unions (on ``kind``) over the spec models of
the plug-ins in the registries (:mod:`runner.catalog`), rebuilt when a plug-in is registered at
run time, so such a plug-in validates like a built-in one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from runner.catalog import ATTACKS, DATASETS, MODELS, RECIPES
from runner.errors import AdvrunError
from runner.registry import unknown_name_message
from runner.spec.attacks import ATTACK_SPECS
from runner.spec.base import (
    MAX_BATCH,
    MAX_EXAMPLES,
    MAX_PIXEL,
    MAX_SEED,
    Expr,
    Pair,
    Seed,
    StrictModel,
)
from runner.spec.certify import CertifySpec
from runner.spec.gate import GateSpec
from runner.spec.poisoning import PoisoningSpec
from runner.spec.recipes import RECIPE_SPECS
from runner.spec.tracking import TrackingSpec
from runner.spec.transforms import AugmentList, NormalizeField
from runner.spec.tune import TuneSpec


def _union(configs: Mapping[str, type]) -> Any:
    """One of the registered spec models, picked by ``kind`` (in registration order)."""
    models = []
    for name, model in configs.items():
        field = getattr(model, "model_fields", {}).get("kind")
        if field is None or field.annotation != Literal[name]:
            raise AdvrunError(
                f"plug-in '{name}': its spec model {getattr(model, '__qualname__', model)} must "
                f'declare kind: Literal["{name}"], the name it is registered under'
            )
        models.append(model)
    return Annotated[Union[tuple(models)], Field(discriminator="kind")]  # noqa: UP007


RecipeSpec = _union(RECIPE_SPECS)
AttackSpec = _union(ATTACK_SPECS)

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DataSpec(StrictModel):
    """The data set and its seeded train/validation/test split."""

    dataset: str = Field(
        "digits",
        description="a registered data set: " + ", ".join(DATASETS.names()),
    )
    path: str | None = Field(None, description="npz: the file with arrays x and y")
    root: str | None = Field(
        None,
        description="mnist family, cifar10, cifar100, svhn, image_folder: the local folder "
        "holding the files",
    )
    labels: Literal["fine", "coarse"] | None = Field(
        None,
        description="cifar100: fine (100 classes, the default) or coarse (20 superclasses) labels",
    )
    image_size: tuple[int, int] | None = Field(
        None,
        description="image_folder: resize every image to [height, width] (Pillow, bilinear with "
        "antialiasing); null: all images must already have the same size",
    )
    channels: Literal[1, 3] | None = Field(
        None,
        description="image_folder: 1 (grayscale) or 3 (RGB) channels; default 3 unless every "
        "image is grayscale",
    )
    augment: AugmentList = Field(
        default_factory=list,
        description="training augmentation, applied on the device to each training batch before "
        "the recipe's attack (validation, test and attacks see the images as they are): "
        "none (default), or a list of random_crop: {padding: 4, mode: zero|reflect} and "
        "horizontal_flip: {p: 0.5}",
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="fraction of the training pool held out for validation"
    )
    test_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="fraction held out for test (ignored when the data set has an official test split)",
    )
    split_seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="seed of the split (0 to 2**32-1); fixed across run seeds so runs share test "
        "examples",
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=MAX_EXAMPLES,
        description=f"use at most this many training examples (quick trials; at most {MAX_EXAMPLES:,})",
    )
    num_classes: int | None = Field(
        None,
        ge=2,
        le=100_000,
        description="the number of classes (labels 0..num_classes-1). Default: the data set's own "
        "count, or for npz the largest label + 1, in which case labels that skip classes are "
        "refused; declare it when some classes really have no examples",
    )

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(unknown_name_message("dataset", v, DATASETS.names()))
        return v

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            return (v, v)
        return tuple(v) if isinstance(v, list) else v  # YAML has no tuples; the model is strict

    @field_validator("image_size")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 1:
            raise ValueError(f"image_size {list(v)} must be positive [height, width]")
        return v


class ThreatSpec(StrictModel):
    """The evaluation threat model: what the attacker may change."""

    norm: Literal["linf", "l2"] = Field(
        "linf", description="distance in which the budget is measured"
    )
    eps: Expr = Field(..., description="perturbation budget in pixel units, e.g. 0.1 or 8/255")
    pixel_range: Annotated[tuple[float, float], Pair] = Field(
        (0.0, 1.0),
        description=f"[low, high] valid pixel values (finite, within +-{MAX_PIXEL:g}); the loaders' "
        "[0, 1] images are mapped onto it",
    )

    @field_validator("pixel_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"pixel_range [{v[0]}, {v[1]}] must be [low, high] with low < high")
        if max(abs(v[0]), abs(v[1])) > MAX_PIXEL:
            raise ValueError(
                f"pixel_range [{v[0]:g}, {v[1]:g}] is beyond +-{MAX_PIXEL:g}; pixel values are "
                "usually [0, 1] or [0, 255]"
            )
        return v


class ModelSpec(StrictModel):
    """One model architecture to train (or to audit with ``advrun eval``)."""

    name: str = Field(
        ..., min_length=1, max_length=80, description="your name for this model; used in run ids"
    )
    arch: str = Field(
        ...,
        description="a registered architecture ("
        + ", ".join(MODELS.names())
        + "), RobustBench's model zoo 'robustbench:<model name>' (kwargs dataset, threat_model, "
        "model_dir; needs the robustbench package) or a user factory 'package.module:function' "
        "(needs --allow-import)",
    )
    kwargs: dict[str, int | float | str | bool | list[int]] = Field(
        default_factory=dict,
        description="keyword arguments of the architecture, e.g. {hidden: [128]}",
    )
    normalize: NormalizeField = Field(
        None,
        description="normalise inside the model: {mean: [...], std: [...]} in [0, 1] pixel units "
        "or a preset (cifar10, cifar100, svhn, imagenet, inception, mnist); the model still "
        "takes pixels in pixel_range, so eps and attacks stay in pixel units",
    )
    weights: Literal["raw", "ema"] | None = Field(
        None,
        description="advrun eval: which weights of a checkpoint that keeps EMA weights beside the "
        "raw ones (e.g. {model: ..., ema: ...}); required for such a file (advrun eval --weights "
        "overrides it)",
    )

    @field_validator("arch")
    @classmethod
    def _known(cls, v: str) -> str:
        if ":" not in v and v not in MODELS:
            raise ValueError(unknown_name_message("model architecture", v, MODELS.names()))
        return v


class EscalationSpec(StrictModel):
    """Larger budgets where the evidence asks for them (docs/evaluation.md, "Escalation")."""

    enabled: bool | None = Field(
        None,
        description="on a masking signal (Square broke what the white-box stages missed; a "
        "checklist check warned or failed) re-run the responsible stage on the survivors with a "
        "larger budget until a rung breaks nothing new or the caps are reached; no signal, no "
        "escalation. Default: on for advrun eval (an audit of a model), off for trained runs",
    )
    max_queries: int = Field(
        10000, ge=1000, le=1000000,
        description="Square's ladder: 1000, 2500, 5000, 10000, 20000 ... queries, up to this cap",
    )  # fmt: skip
    max_restarts: int = Field(
        5, ge=1, le=100, description="restarts of the escalated APGD-CE (100 steps)"
    )
    fab: bool = Field(True, description="end the white-box ladder with FAB-T (9 targets x 100)")


class EvalSpec(StrictModel):
    """How trained models are evaluated."""

    n: int | None = Field(
        None,
        ge=1,
        le=MAX_EXAMPLES,
        description="test examples to evaluate (default: the whole test split; at most "
        f"{MAX_EXAMPLES:,})",
    )
    batch_size: int = Field(
        512,
        ge=1,
        le=MAX_BATCH,
        description=f"batch size of evaluation and attacks (1 to {MAX_BATCH})",
    )
    checkpoint: Literal["best", "last"] = Field(
        "best",
        description="which checkpoint is evaluated: best validation robust accuracy, or the last epoch",
    )
    bootstrap: int = Field(
        1000, ge=0, le=100000, description="bootstrap resamples of each 95% confidence interval"
    )
    suite: Literal["cascade", "independent"] = Field(
        "cascade",
        description="cascade: attacks at the threat model run cheap to expensive, each only on the "
        "examples still correct (fast; per-attack rows are cumulative); independent: every attack "
        "on every clean-correct example (per-attack rows are each attack's own accuracy)",
    )
    eps_curve: list[Expr] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="robustness curve: evaluate the curve attacks at each of these eps, e.g. "
        "[0, 0.025, 0.05, 0.1, 0.2] ('eps' here is the threat eps)",
    )
    curve_attacks: list[str] | None = Field(
        None,
        min_length=1,
        description="names of the attacks drawn on the curve (default: the pgd/apgd attacks at "
        "the threat norm)",
    )
    checklist: bool = Field(
        True,
        description="run the evaluation checklist (Carlini et al. 2019): gradient masking signs",
    )
    checklist_n: int = Field(
        256, ge=8, le=100000, description="test examples the checklist probes use (8 to 100000)"
    )
    escalation: EscalationSpec = Field(
        default_factory=EscalationSpec,
        description="budgets that grow on a masking signal (see docs/evaluation.md)",
    )

    @field_validator("eps_curve")
    @classmethod
    def _as_floats(cls, v: list[float | str] | None) -> list[float | str] | None:
        # whole numbers (0, 1) serialise as floats like every other eps
        return None if v is None else [float(e) if isinstance(e, int) else e for e in v]


class OutputSpec(StrictModel):
    """Where results go."""

    dir: str | None = Field(
        None,
        description="output directory, relative to where advrun runs and inside it (default: "
        "reports/<name>); an absolute path or one that climbs out with .. is refused: pass "
        "-o DIR on the command line to write elsewhere",
    )

    @field_validator("dir")
    @classmethod
    def _inside(cls, v: str | None) -> str | None:
        if v is None:
            return v
        hint = "pass -o DIR on the command line to write outside the working directory"
        if not v.strip():
            raise ValueError(
                "output.dir is empty; remove it (default reports/<name>) or name a folder"
            )
        if v.startswith("~"):
            raise ValueError(f"output.dir '{v}': ~ is not expanded in a spec; {hint}")
        if os.path.isabs(v):
            raise ValueError(
                f"output.dir '{v}' is absolute: a spec may only write inside the directory advrun "
                f"runs in; use a relative path, or {hint}"
            )
        norm = os.path.normpath(v)
        if norm == ".." or norm.startswith(".." + os.sep):
            raise ValueError(
                f"output.dir '{v}' climbs out of the directory advrun runs in; use a path inside "
                f"it, or {hint}"
            )
        return v


class Spec(StrictModel):
    """An advrun experiment: data, models, recipes, threat model and attack suite."""

    name: str = Field(
        ...,
        min_length=1,
        max_length=80,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="experiment name (letters, digits, . _ -); default output dir reports/<name>",
    )
    description: str = Field(
        "",
        max_length=10_000,
        description="free text, shown in the report (newlines allowed; escaped in every output)",
    )
    seeds: list[Seed] = Field(
        [0],
        min_length=1,
        max_length=1000,
        description="training seeds (0 to 2**32-1); every model x recipe runs once per seed",
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N or mps")
    deterministic: bool = Field(
        False,
        description="seed python, numpy and torch from the run seed, use torch's deterministic "
        "algorithms (CUBLAS_WORKSPACE_CONFIG on CUDA) and fail loudly where an operation has "
        "none; CPU threads are fixed (see threads) because results depend on the thread count. "
        "false keeps the fast path (cudnn autotuning)",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="torch CPU threads per run (default: the machine's cores shared between "
        "parallel jobs; 1 with deterministic: true, so results do not depend on --jobs)",
    )
    data: DataSpec = Field(default_factory=DataSpec, description="data set and split")
    threat: ThreatSpec = Field(..., description="the evaluation threat model")
    models: list[ModelSpec] = Field(..., min_length=1, description="architectures to train")
    recipes: list[RecipeSpec] = Field(..., min_length=1, description="training recipes")
    attacks: list[AttackSpec] = Field(
        default_factory=list, description="the attack suite run on every trained model"
    )
    eval: EvalSpec = Field(default_factory=EvalSpec, description="evaluation settings")
    certify: CertifySpec | None = Field(
        None,
        description="randomized-smoothing certification (Cohen et al. 2019) of every evaluated "
        "model: certified L2 radii, certified accuracy against radius, the smoothed clean accuracy",
    )
    output: OutputSpec = Field(default_factory=OutputSpec, description="output settings")
    gate: GateSpec | None = Field(
        None,
        description="robustness gate: thresholds that make advrun run/eval exit with code 3",
    )
    tune: TuneSpec | None = Field(
        None, description="an Optuna study over one run of the matrix (advrun tune)"
    )
    poisoning: PoisoningSpec | None = Field(
        None,
        description="simulate a backdoor attacker: every run trains on the poisoned set and is "
        "evaluated for attack success rate",
    )
    tracking: TrackingSpec | None = Field(
        None,
        description="log every run to an experiment tracker (MLflow); never changes run ids",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"device '{v}' is not one of auto, cpu, mps, cuda, cuda:N")
        return v


def _follow_registries() -> None:
    """Rebuild Spec's recipe and attack unions over the plug-ins registered now."""
    fields = Spec.model_fields
    fields["recipes"].annotation = list[_union(RECIPE_SPECS)]
    fields["attacks"].annotation = list[_union(ATTACK_SPECS)]
    Spec.model_rebuild(force=True)


RECIPES.subscribe(_follow_registries)
ATTACKS.subscribe(_follow_registries)
