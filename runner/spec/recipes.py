"""Training recipes: the shared rules; each kind's spec model is a plug-in (the shared options:
:mod:`runner.spec.recipe_options`).

A kind's spec model subclasses :class:`RecipeBase` (or :class:`AdversarialRecipeBase`,
:class:`IterativeRecipeBase`) beside its implementation in ``runner/recipes/<kind>.py`` and
carries its own cross-field checks (:meth:`RecipeBase.check`,
:meth:`AdversarialRecipeBase.check_at_eps`). :meth:`RecipeBase.problems` runs the shared rules
(optimizer, epochs, schedule, engine support, eps against the pixel range, step sizes) and then
the kind's own; :mod:`runner.spec.checks` calls it for every recipe.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field

from runner import expr
from runner.catalog import RECIPES
from runner.spec.base import (
    MAX_BATCH,
    MAX_EPOCHS,
    ExprSweep,
    IntSweep,
    StrictModel,
)
from runner.spec.budget import check_eps, check_steps
from runner.spec.recipe_options import (  # re-exported: the recipes' shared options
    MAX_TRAIN_STEPS,
    AWPSpec,
    EMASpec,
    MonitorSpec,
    OptimizerSpec,
    ScheduleSpec,
)

Problem = tuple[tuple[Any, ...], str]


def as_list(v: Any) -> list[Any]:
    """The values of a sweepable field: its list, or the one value."""
    return v if isinstance(v, list) else [v]


def check_beta(beta: Any, where: tuple[Any, ...]) -> Iterator[Problem]:
    """The weight of a robustness term (TRADES, MART), for every swept value."""
    for b in as_list(beta):
        if b < 0:
            yield (*where, "beta"), f"beta {b:g} must be >= 0 (0 drops the robustness term)"
        elif b > 1000:
            yield (*where, "beta"), f"beta {b:g} is above 1000, the limit (usual: 1 to 6)"


class RecipeBase(StrictModel):
    """Options every recipe shares."""

    name: str = Field(
        ..., min_length=1, max_length=80, description="your name for this recipe; used in run ids"
    )
    engine: Literal["native", "art"] = Field(
        "native",
        description="native: advrun's on-device loop; art: ART's own trainer (reference engine)",
    )
    epochs: IntSweep = Field(
        10, description=f"training epochs (1 to {MAX_EPOCHS:,}); a list sweeps"
    )
    batch_size: int = Field(
        128, ge=1, le=MAX_BATCH, description=f"training batch size (1 to {MAX_BATCH})"
    )
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec, description="optimizer")
    schedule: ScheduleSpec = Field(
        default_factory=ScheduleSpec, description="learning-rate schedule"
    )
    monitor: MonitorSpec = Field(
        default_factory=MonitorSpec, description="per-epoch validation guardrail"
    )
    amp: Literal["off", "bf16"] = Field(
        "off",
        description="bf16: train under bfloat16 autocast (native engine on CUDA; ignored with a "
        "note elsewhere)",
    )
    channels_last: bool = Field(
        False,
        description="channels_last memory format (native engine on CUDA; ignored with a note "
        "elsewhere)",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model for training (native engine on CUDA; ignored with a "
        "note elsewhere); the first epoch is slower while it compiles",
    )
    ema: EMASpec | None = Field(
        None,
        description="keep an exponential moving average of the weights, which validation, the "
        "best checkpoint and the evaluation use (native engine); null: the trained weights",
    )

    def as_data(self) -> dict[str, Any]:
        """Every value, as run.json and metrics.json hold them, but the keys that are null by
        default and null here (an option block that is off: ``ema``, ``awp``): files of runs
        without them read as before the options existed, also by an older advrun."""
        fields = type(self).model_fields
        off = {
            f.alias or k
            for k, f in fields.items()
            if f.default is None and getattr(self, k) is None
        }
        return {k: v for k, v in self.model_dump().items() if k not in off}

    def loop_epochs(self, epochs: int | None = None) -> int:
        """Passes of the training loop over the data for ``epochs`` (default: this recipe's,
        once resolved); a recipe that replays each batch makes fewer."""
        return int(self.epochs if epochs is None else epochs)

    def problems(self, where: tuple[Any, ...], spec: Any, threat_eps: float) -> Iterator[Problem]:
        """Every cross-field problem of this recipe (``spec`` is the whole validated spec): the
        shared rules, then this kind's own (:meth:`check`)."""
        yield from _check_engine(self, where, spec)
        yield from _check_training(self, where)
        yield from _check_ema(self, where)
        yield from self.check(where, spec)

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        """This kind's own cross-field problems; override in the recipe's file."""
        return iter(())


class AdversarialRecipeBase(RecipeBase):
    """Options of recipes that craft perturbations during training.

    ``eps_relative`` names the fields written relative to the recipe's eps (``eps/4``): the plan
    resolves them to pixel units with it."""

    eps_relative: ClassVar[tuple[str, ...]] = ("step_size", "alpha", "init_eps")

    eps: ExprSweep = Field(
        None,
        description="training perturbation budget in pixel units (default: the threat eps); a list sweeps",
    )
    eps_warmup_epochs: int = Field(
        0,
        ge=0,
        le=MAX_EPOCHS,
        description="ramp eps linearly from 0 over this many epochs (0: full eps from the start)",
    )

    def problems(self, where: tuple[Any, ...], spec: Any, threat_eps: float) -> Iterator[Problem]:
        """The shared rules, this kind's own, then per eps value: the budget and
        :meth:`check_at_eps`."""
        yield from super().problems(where, spec, threat_eps)
        lo, hi = spec.threat.pixel_range
        for e in [threat_eps] if self.eps is None else as_list(self.eps):
            try:
                eps = expr.evaluate(e, threat_eps)
            except ValueError as err:
                yield (*where, "eps"), str(err)
                continue
            yield from check_eps(eps, lo, hi, (*where, "eps"))
            yield from self.check_at_eps(eps, where, spec)

    def check_at_eps(self, eps: float, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        """This kind's own problems at one (swept) training eps, in pixel units; override."""
        return iter(())


class IterativeRecipeBase(AdversarialRecipeBase):
    """Recipes whose inner maximisation takes several projected gradient steps."""

    step_size: ExprSweep = Field(
        "eps/4", description="attack step size; 'eps' here is this recipe's eps; a list sweeps"
    )
    steps: IntSweep = Field(
        7, description=f"attack steps per batch (1 to {MAX_TRAIN_STEPS}); a list sweeps"
    )

    def check_at_eps(self, eps: float, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        """Step sizes against this eps, for every swept step_size and steps."""
        for step_expr in as_list(self.step_size):
            step = expr.evaluate(step_expr, eps)
            for steps in as_list(self.steps):
                if not 1 <= steps <= MAX_TRAIN_STEPS:
                    yield (
                        (*where, "steps"),
                        f"steps {steps} must be in 1..{MAX_TRAIN_STEPS} (attack steps per "
                        "training batch; 7 to 10 is usual)",
                    )
                    continue
                yield from check_steps(eps, step, steps, where, iterative=steps > 1)


OVERFIT_GAP = 0.3
"""The guard's default FGSM-PGD gap: measured on digits (docs/performance.md, stage co-zoo)."""


class SingleStepRecipeBase(AdversarialRecipeBase):
    """Recipes that craft with a single gradient step: they can overfit catastrophically (PGD
    accuracy collapses within an epoch while FGSM accuracy soars, Wong et al. 2020), which a
    guard watches for in validation PGD accuracy."""

    overfit_drop: float | None = Field(
        0.2,
        gt=0,
        le=1,
        description="catastrophic-overfitting guard: stop and restore the best epoch when "
        "validation PGD accuracy falls this far below its best (null: off)",
    )
    overfit_gap: float | None = Field(
        OVERFIT_GAP,
        gt=0,
        le=1,
        description="the guard's second signature, on when overfit_drop is: stop and restore the "
        "best epoch when validation FGSM accuracy exceeds validation PGD accuracy by more than "
        "this in an epoch (single-step overfitting: the model resists the FGSM it trains on, "
        "PGD breaks it; null: not watched, FGSM accuracy not measured)",
    )

    def watches_fgsm(self) -> bool:
        """Whether the guard measures validation FGSM accuracy (and epochs.csv has val_fgsm)."""
        return self.overfit_drop is not None and self.overfit_gap is not None

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        """The guard needs validation; a kind's own ``check`` calls this one first."""
        guarded = self.overfit_drop is not None
        if not guarded and "overfit_gap" in self.model_fields_set and self.overfit_gap:
            yield (
                (*where, "overfit_gap"),
                (
                    "overfit_gap extends the catastrophic-overfitting guard, which is off here "
                    "(overfit_drop: null); set overfit_drop (e.g. 0.2) to turn the guard on"
                ),
            )
        if guarded and (self.monitor.n == 0 or spec.data.val_fraction == 0):
            yield (
                (*where, "overfit_drop"),
                (
                    "the catastrophic-overfitting guard watches validation PGD accuracy, but "
                    "validation is off (monitor.n or data.val_fraction is 0); turn it on or set "
                    "overfit_drop: null"
                ),
            )


def check_awp(recipe: RecipeBase, awp: AWPSpec | None, where: tuple[Any, ...]) -> Iterator[Problem]:
    """The weight perturbation's size and warm-up (for the kinds that offer ``awp``)."""
    if awp is None:
        return
    for gamma in as_list(awp.gamma):
        if not 0 < gamma <= 1:
            yield (
                (*where, "awp", "gamma"),
                f"awp.gamma {gamma:g} must be in (0, 1]: the perturbation's size relative to each "
                "layer's weight norm (the paper: 0.005 with TRADES, 0.01 with PGD)",
            )
    if awp.warmup_epochs < 0:
        yield (
            (*where, "awp", "warmup_epochs"),
            (f"awp.warmup_epochs {awp.warmup_epochs} must be >= 0 (0: perturb from the start)"),
        )
    for e in as_list(recipe.epochs):
        if awp.warmup_epochs >= e >= 1:
            yield (
                (*where, "awp", "warmup_epochs"),
                (
                    f"awp.warmup_epochs {awp.warmup_epochs} is not below epochs {e}: the weights would "
                    "never be perturbed; lower it or remove awp"
                ),
            )
            break


RECIPE_SPECS = RECIPES.configs()
"""Spec models of the registered recipe kinds by kind, loaded on access (each kind's model lives
beside its implementation, in ``runner/recipes/<kind>.py``, named by the catalog)."""

# Recipe fields (dotted) whose value may be a list to sweep over.
SWEEPABLE = (
    "eps",
    "step_size",
    "steps",
    "ratio",
    "beta",
    "lambda",
    "m",
    "awp.gamma",
    "ema.decay",
    "sigma",
    "samples",
    "epochs",
    "optimizer.lr",
    "optimizer.weight_decay",
)


def _check_training(recipe: RecipeBase, where: tuple[Any, ...]) -> Iterator[Problem]:
    """Optimizer, epochs and schedule values that cannot train."""
    for lr in as_list(recipe.optimizer.lr):
        if lr <= 0:
            yield (*where, "optimizer", "lr"), f"optimizer.lr {lr:g} must be positive"
    for wd in as_list(recipe.optimizer.weight_decay):
        if wd < 0:
            yield (
                (*where, "optimizer", "weight_decay"),
                f"optimizer.weight_decay {wd:g} must be >= 0 (usual: 0 to 5e-4)",
            )
    for e in as_list(recipe.epochs):
        if e < 1:
            yield (*where, "epochs"), f"epochs {e} must be at least 1"
        elif e > MAX_EPOCHS:
            yield (
                (*where, "epochs"),
                f"epochs {e} is more than {MAX_EPOCHS:,}, the limit; is it a typo?",
            )
    sched = recipe.schedule
    if sched.milestone_epochs is not None:
        if sched.name != "step":
            yield (
                (*where, "schedule", "milestone_epochs"),
                f"milestone_epochs applies to the step schedule, not '{sched.name}'; add "
                "name: step",
            )
        elif any(m <= 0 for m in sched.milestone_epochs):
            yield (
                (*where, "schedule", "milestone_epochs"),
                f"milestone_epochs {sched.milestone_epochs} must be positive epoch counts",
            )


def _check_ema(recipe: RecipeBase, where: tuple[Any, ...]) -> Iterator[Problem]:
    """The average's decay and warm-up."""
    ema = recipe.ema
    if ema is None:
        return
    for decay in as_list(ema.decay):
        if not 0 < decay < 1:
            yield (
                (*where, "ema", "decay"),
                f"ema.decay {decay:g} must be in (0, 1): the share of the average kept at each "
                "step (usual: 0.995 to 0.9999)",
            )
    if ema.warmup < 0:
        yield (*where, "ema", "warmup"), f"ema.warmup {ema.warmup:g} must be >= 0 (epochs)"
    for e in as_list(recipe.epochs):
        if ema.warmup >= recipe.loop_epochs(e) >= 1:
            yield (
                (*where, "ema", "warmup"),
                (
                    f"ema.warmup {ema.warmup:g} is not below the {recipe.loop_epochs(e)} epochs of "
                    "the training loop: the average would only copy the weights; lower it or remove ema"
                ),
            )
            break
    if recipe.engine == "art":
        yield (
            (*where, "ema"),
            (
                "ema applies to the native engine (ART's trainers step the weights without advrun's "
                "per-batch hooks); use engine: native or remove ema"
            ),
        )


_NORM_NAMES = {"linf": "L-inf", "l2": "L2"}


def _check_engine(recipe: RecipeBase, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
    if recipe.engine != "art":
        return
    world = os.environ.get("WORLD_SIZE", "1")
    if world not in ("", "0", "1"):  # torchrun: one run on several processes
        yield (
            (*where, "engine"),
            f"engine: art under torchrun (WORLD_SIZE={world}): ART's trainers are "
            "single-process; use engine: native, or run without torchrun",
        )
        return
    plugin = RECIPES.load(recipe.kind)
    if not plugin.art_trainer:
        with_art = [n for n in RECIPES.names() if RECIPES.load(n).art_trainer]
        yield (
            (*where, "engine"),
            (
                f"ART has no trainer for recipe kind '{recipe.kind}'; use engine: native "
                f"(kinds with an ART trainer: {', '.join(with_art)})"
            ),
        )
        return
    if recipe.amp != "off" or recipe.channels_last or recipe.compile:
        key = (
            "amp" if recipe.amp != "off" else "channels_last" if recipe.channels_last else "compile"
        )
        yield (
            (*where, key),
            f"{key} applies to the native engine only; remove it or use engine: native",
        )
    if isinstance(recipe, AdversarialRecipeBase) and recipe.eps_warmup_epochs:
        yield (
            (*where, "eps_warmup_epochs"),
            ("ART's trainers have no eps warm-up; set eps_warmup_epochs: 0 or use engine: native"),
        )
    if spec.threat.norm not in plugin.art_norms:
        only = " or ".join(_NORM_NAMES[n] for n in plugin.art_norms)
        yield (
            (*where, "engine"),
            (
                f"ART's {plugin.art_trainer} attacks in {only} only, but the threat norm is "
                f"{spec.threat.norm}; use engine: native"
            ),
        )
