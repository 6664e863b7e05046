"""Training recipes: one spec model per ``kind``; shared options live on :class:`RecipeBase`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.spec.base import ExprSweep, FloatSweep, IntSweep, StrictModel


class OptimizerSpec(StrictModel):
    """The optimizer of the training loop."""

    name: Literal["sgd", "adam", "adamw"] = Field("adam", description="sgd, adam or adamw")
    lr: FloatSweep = Field(
        1e-3, description="learning rate (peak rate for cyclic/onecycle); a list sweeps"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum (sgd only)")
    nesterov: bool = Field(False, description="Nesterov momentum (sgd only)")
    weight_decay: FloatSweep = Field(0.0, description="L2 weight decay; a list sweeps")


class ScheduleSpec(StrictModel):
    """The learning-rate schedule, stepped per batch."""

    name: Literal["constant", "step", "cosine", "cyclic", "onecycle"] = Field(
        "constant",
        description="constant; step (multiply by gamma at milestones); cosine annealing; "
        "cyclic (triangular 0 -> lr -> 0, as in Wong et al. 2020); onecycle",
    )
    milestones: list[float] = Field(
        [0.5, 0.75],
        description="step schedule: fractions of training at which lr is multiplied by gamma",
    )
    gamma: float = Field(0.1, gt=0, description="step schedule: multiplier at each milestone")


class MonitorSpec(StrictModel):
    """Per-epoch guardrail: clean and PGD accuracy on a held-out validation subset."""

    n: int = Field(
        512, ge=0, description="validation examples evaluated each epoch (0 turns monitoring off)"
    )
    steps: int = Field(
        10, ge=1, description="PGD steps of the validation attack (step size 2.5*eps/steps)"
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
    epochs: IntSweep = Field(10, description="training epochs; a list sweeps")
    batch_size: int = Field(128, ge=1, le=65536, description="training batch size")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec, description="optimizer")
    schedule: ScheduleSpec = Field(
        default_factory=ScheduleSpec, description="learning-rate schedule"
    )
    monitor: MonitorSpec = Field(
        default_factory=MonitorSpec, description="per-epoch validation guardrail"
    )


class AdversarialRecipeBase(RecipeBase):
    """Options of recipes that craft perturbations during training."""

    eps: ExprSweep = Field(
        None,
        description="training perturbation budget in pixel units (default: the threat eps); a list sweeps",
    )
    step_size: ExprSweep = Field(
        "eps/4", description="attack step size; 'eps' here is this recipe's eps; a list sweeps"
    )
    steps: IntSweep = Field(7, description="attack steps per batch; a list sweeps")
    random_start: bool = Field(
        True, description="start each attack from a uniform random point in the ball"
    )
    eps_warmup_epochs: int = Field(
        0,
        ge=0,
        description="ramp eps linearly from 0 over this many epochs (0: full eps from the start)",
    )


class StandardRecipe(RecipeBase):
    """Clean training."""

    kind: Literal["standard"] = Field(description="clean training")


class PGDRecipe(AdversarialRecipeBase):
    """Madry et al. 2018: train on PGD examples."""

    kind: Literal["pgd"] = Field(description="Madry et al. 2018 PGD adversarial training")


RECIPE_SPECS: dict[str, type[RecipeBase]] = {"standard": StandardRecipe, "pgd": PGDRecipe}

# Recipe fields (dotted) whose value may be a list to sweep over.
SWEEPABLE = ("eps", "step_size", "steps", "epochs", "optimizer.lr", "optimizer.weight_decay")
