"""Training recipes: one spec model per ``kind``; shared options live on :class:`RecipeBase`.

Cross-field rules (eps against the pixel range, step sizes, engine support) are in
:func:`check_recipe`, which :mod:`runner.spec.checks` calls for every recipe.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from runner import expr
from runner.catalog import RECIPES
from runner.spec.base import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_EXAMPLES,
    Expr,
    ExprSweep,
    FloatSweep,
    IntSweep,
    StrictModel,
)

MAX_TRAIN_STEPS = 1000  # attack steps per training batch


class OptimizerSpec(StrictModel):
    """The optimizer of the training loop."""

    name: Literal["sgd", "adam", "adamw"] = Field("adam", description="sgd, adam or adamw")
    lr: FloatSweep = Field(
        1e-3,
        description="learning rate, > 0 (peak rate for cyclic/onecycle); a list sweeps",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum (sgd only)")
    nesterov: bool = Field(False, description="Nesterov momentum (sgd only)")
    weight_decay: FloatSweep = Field(0.0, description="L2 weight decay, >= 0; a list sweeps")


class ScheduleSpec(StrictModel):
    """The learning-rate schedule, stepped per batch."""

    name: Literal["constant", "step", "cosine", "cyclic", "onecycle"] = Field(
        "constant",
        description="constant; step (multiply by gamma at milestones); cosine annealing; "
        "cyclic (triangular 0 -> lr -> 0, as in Wong et al. 2020); onecycle",
    )
    milestones: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        [0.5, 0.75],
        max_length=100,
        description="step schedule: fractions of training, in (0, 1), at which lr is multiplied "
        "by gamma",
    )
    gamma: float = Field(
        0.1, gt=0, le=10, description="step schedule: multiplier at each milestone, in (0, 10]"
    )
    milestone_epochs: list[Annotated[float, Field(gt=0, le=1_000_000)]] | None = Field(
        None,
        max_length=100,
        description="step schedule: epochs after which lr is multiplied by gamma, e.g. [100, 150] "
        "of 200 (as torch's MultiStepLR counts them); replaces milestones; milestones past the "
        "last epoch never apply",
    )
    peak: float = Field(
        0.4,
        gt=0,
        lt=1,
        description="cyclic schedule: the fraction of training at which lr peaks (0.4 as in "
        "Wong et al. 2020's paper; their train_fgsm.py peaks at 0.5)",
    )


class MonitorSpec(StrictModel):
    """Per-epoch guardrail: clean and PGD accuracy on a held-out validation subset."""

    n: int = Field(
        512,
        ge=0,
        le=MAX_EXAMPLES,
        description="validation examples evaluated each epoch (0 turns monitoring off)",
    )
    steps: int = Field(
        10,
        ge=1,
        le=MAX_TRAIN_STEPS,
        description=f"PGD steps of the validation attack (1 to {MAX_TRAIN_STEPS}; step size "
        "2.5*eps/steps)",
    )


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


class AdversarialRecipeBase(RecipeBase):
    """Options of recipes that craft perturbations during training."""

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


class IterativeRecipeBase(AdversarialRecipeBase):
    """Recipes whose inner maximisation takes several projected gradient steps."""

    step_size: ExprSweep = Field(
        "eps/4", description="attack step size; 'eps' here is this recipe's eps; a list sweeps"
    )
    steps: IntSweep = Field(
        7, description=f"attack steps per batch (1 to {MAX_TRAIN_STEPS}); a list sweeps"
    )


class StandardRecipe(RecipeBase):
    """Clean training."""

    kind: Literal["standard"] = Field(description="clean training")


class FGSMAugmentRecipe(AdversarialRecipeBase):
    """Goodfellow et al. 2015: replace a share of each batch by FGSM examples, correct labels."""

    kind: Literal["fgsm_augment"] = Field(
        description="FGSM data augmentation (ART's AdversarialTrainer)"
    )
    ratio: FloatSweep = Field(
        0.5,
        description="share of each batch replaced by its FGSM examples, in (0, 1]; a list sweeps",
    )


class PGDRecipe(IterativeRecipeBase):
    """Madry et al. 2018: train on PGD examples."""

    kind: Literal["pgd"] = Field(description="Madry et al. 2018 PGD adversarial training")
    random_start: bool = Field(
        True, description="start each attack from a uniform random point in the ball"
    )


class FGSMRSRecipe(AdversarialRecipeBase):
    """Wong, Rice & Kolter 2020 ("fast is better than free"): FGSM from a random start."""

    kind: Literal["fgsm_rs"] = Field(description="FGSM from a uniform random start (fast AT)")
    alpha: Expr = Field(
        "1.25*eps",
        description="FGSM step from the random start; 'eps' is this recipe's eps (the paper's "
        "1.25*eps is larger than eps on purpose)",
    )
    schedule: ScheduleSpec = Field(
        default_factory=lambda: ScheduleSpec(name="cyclic"),
        description="learning-rate schedule (default cyclic, as in the paper)",
    )
    overfit_drop: float | None = Field(
        0.2,
        gt=0,
        le=1,
        description="catastrophic-overfitting guard: stop and restore the best epoch when "
        "validation PGD accuracy falls this far below its best (null: off)",
    )


class TRADESRecipe(IterativeRecipeBase):
    """Zhang et al. 2019: CE(f(x), y) + beta * KL(f(x) || f(x')), x' maximising the KL."""

    kind: Literal["trades"] = Field(description="TRADES (Zhang et al. 2019)")
    beta: FloatSweep = Field(
        6.0, description="weight of the KL robustness term (0 to 1000; the paper uses 1 to 6)"
    )


class MARTRecipe(IterativeRecipeBase):
    """Wang et al. 2020: boosted CE on x' + beta * KL(f(x) || f(x')) * (1 - p_y(x))."""

    kind: Literal["mart"] = Field(description="MART, misclassification-aware (Wang et al. 2020)")
    beta: FloatSweep = Field(
        6.0,
        description="weight of the misclassification-aware KL term (0 to 1000; the paper uses 6)",
    )


class BackdoorMitigationRecipe(RecipeBase):
    """Train on trigger-stamped copies of training images with their correct labels."""

    kind: Literal["backdoor_mitigation"] = Field(
        description="add trigger-stamped copies with correct labels (needs a poisoning: block)"
    )
    fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of the training images that get a trigger-stamped copy with their "
        "own label, in (0, 1]",
    )


RECIPE_SPECS: dict[str, type[RecipeBase]] = {
    "standard": StandardRecipe,
    "fgsm_augment": FGSMAugmentRecipe,
    "pgd": PGDRecipe,
    "fgsm_rs": FGSMRSRecipe,
    "trades": TRADESRecipe,
    "mart": MARTRecipe,
    "backdoor_mitigation": BackdoorMitigationRecipe,
}

# Recipe fields (dotted) whose value may be a list to sweep over.
SWEEPABLE = (
    "eps",
    "step_size",
    "steps",
    "ratio",
    "beta",
    "epochs",
    "optimizer.lr",
    "optimizer.weight_decay",
)

Problem = tuple[tuple[Any, ...], str]


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def check_recipe(
    recipe: RecipeBase, where: tuple[Any, ...], spec: Any, threat_eps: float
) -> Iterator[Problem]:
    """Every cross-field problem of one recipe (``spec`` is the whole validated spec)."""
    # imported here: checks.py imports this module (through core.py) at its top
    from runner.spec.checks import check_eps, check_steps

    lo, hi = spec.threat.pixel_range
    yield from _check_engine(recipe, where, spec)
    for lr in _as_list(recipe.optimizer.lr):
        if lr <= 0:
            yield (*where, "optimizer", "lr"), f"optimizer.lr {lr:g} must be positive"
    for wd in _as_list(recipe.optimizer.weight_decay):
        if wd < 0:
            yield (
                (*where, "optimizer", "weight_decay"),
                f"optimizer.weight_decay {wd:g} must be >= 0 (usual: 0 to 5e-4)",
            )
    for e in _as_list(recipe.epochs):
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
    if isinstance(recipe, FGSMAugmentRecipe):
        for r in _as_list(recipe.ratio):
            if not 0 < r <= 1:
                yield (
                    (*where, "ratio"),
                    (
                        f"ratio {r:g} must be in (0, 1]: the share of each batch replaced by FGSM "
                        "examples (1 trains on FGSM examples only)"
                    ),
                )
    if isinstance(recipe, (TRADESRecipe, MARTRecipe)):
        for b in _as_list(recipe.beta):
            if b < 0:
                yield (*where, "beta"), f"beta {b:g} must be >= 0 (0 drops the robustness term)"
            elif b > 1000:
                yield (*where, "beta"), f"beta {b:g} is above 1000, the limit (usual: 1 to 6)"
    if isinstance(recipe, BackdoorMitigationRecipe) and getattr(spec, "poisoning", None) is None:
        yield (
            (*where, "kind"),
            (
                "backdoor_mitigation stamps the trigger of the poisoning: block onto training copies; "
                "add a poisoning: block (trigger, target, fraction) to the spec"
            ),
        )
    guarded = isinstance(recipe, FGSMRSRecipe) and recipe.overfit_drop is not None
    if guarded and (recipe.monitor.n == 0 or spec.data.val_fraction == 0):
        yield (
            (*where, "overfit_drop"),
            (
                "the catastrophic-overfitting guard watches validation PGD accuracy, but "
                "validation is off (monitor.n or data.val_fraction is 0); turn it on or set "
                "overfit_drop: null"
            ),
        )
    if not isinstance(recipe, AdversarialRecipeBase):
        return
    for e in [threat_eps] if recipe.eps is None else _as_list(recipe.eps):
        try:
            eps = expr.evaluate(e, threat_eps)
        except ValueError as err:
            yield (*where, "eps"), str(err)
            continue
        yield from check_eps(eps, lo, hi, (*where, "eps"))
        if isinstance(recipe, IterativeRecipeBase):
            for step_expr in _as_list(recipe.step_size):
                step = expr.evaluate(step_expr, eps)
                for steps in _as_list(recipe.steps):
                    if not 1 <= steps <= MAX_TRAIN_STEPS:
                        yield (
                            (*where, "steps"),
                            f"steps {steps} must be in 1..{MAX_TRAIN_STEPS} (attack steps per "
                            "training batch; 7 to 10 is usual)",
                        )
                        continue
                    yield from check_steps(eps, step, steps, where, iterative=steps > 1)
        if isinstance(recipe, FGSMRSRecipe):
            # no step <= eps rule here: the paper's step is 1.25*eps, clipped back into the ball
            alpha = expr.evaluate(recipe.alpha, eps)
            if not 0 < alpha <= 2 * eps:
                yield (
                    (*where, "alpha"),
                    (
                        f"alpha {alpha:g} must be in (0, 2*eps] = (0, {2 * eps:g}]: beyond 2*eps every "
                        "step lands on a corner of the ball whatever the start (the paper uses 1.25*eps)"
                    ),
                )
            elif recipe.engine == "art" and abs(alpha - 1.25 * eps) > 1e-9 * max(1.0, eps):
                yield (
                    (*where, "alpha"),
                    (
                        f"alpha {alpha:g}: ART's AdversarialTrainerFBFPyTorch hard-codes a step of "
                        f"1.25*eps = {1.25 * eps:g}; use alpha: 1.25*eps or engine: native"
                    ),
                )


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
    if not RECIPES.get(recipe.kind).meta.get("art"):
        with_art = [n for n in RECIPES.names() if RECIPES.get(n).meta.get("art")]
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
    if spec.threat.norm != "linf" and recipe.kind in ("pgd", "fgsm_rs"):
        trainer = RECIPES.get(recipe.kind).meta["art"]
        yield (
            (*where, "engine"),
            (
                f"ART's {trainer} attacks in L-inf only, but the threat norm is {spec.threat.norm}; "
                "use engine: native"
            ),
        )
