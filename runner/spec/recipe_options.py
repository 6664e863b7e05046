"""The options a recipe shares with the others: optimizer, learning-rate schedule, the per-epoch
monitor, and the EMA and AWP blocks (their cross-field checks run in :mod:`runner.spec.recipes`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from runner.spec.base import MAX_EXAMPLES, FloatSweep, StrictModel

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


class EMASpec(StrictModel):
    """An exponential moving average of the weights (Gowal et al. 2020, Rebuffi et al. 2021).

    After every optimizer step the average moves towards the weights by ``1 - decay``; with
    ``ramp`` the decay is min(decay, (1 + t) / (10 + t)) at the t-th step after the warm-up, as in
    DeepMind's code for both papers (TensorFlow's num_updates). Validation, the best checkpoint,
    last.pt and the evaluation use the average.
    """

    decay: FloatSweep = Field(
        0.999,
        description="decay per optimizer step, in (0, 1) (Rebuffi et al. 2021: 0.999; Gowal et "
        "al. 2020's code: 0.995); the average spans about 1/(1 - decay) steps; a list sweeps",
    )
    warmup: float = Field(
        0.0,
        description="epochs (fractions allowed) during which the average is a copy of the "
        "weights; averaging starts after them",
    )
    ramp: bool = Field(
        True,
        description="decay min(decay, (1 + t) / (10 + t)) at the t-th step after the warm-up (as "
        "DeepMind's code), so that early steps do not weigh the initial weights for long",
    )
    buffers: Literal["copy", "average"] = Field(
        "copy",
        description="BatchNorm statistics (and other buffers) of the average: copy = the trained "
        "model's, as DeepMind's code for Gowal et al. 2020 and Rebuffi et al. 2021 evaluates "
        "(only the parameters are averaged); average = averaged like the parameters "
        "(torch.optim.swa_utils.AveragedModel's use_buffers)",
    )


class AWPSpec(StrictModel):
    """Adversarial weight perturbation (Wu, Xia & Wang, NeurIPS 2020), per batch."""

    gamma: FloatSweep = Field(
        0.005,
        description="size of the weight perturbation relative to each layer's weight norm, in "
        "(0, 1] (the paper: 0.005 with TRADES, 0.01 with PGD); a list sweeps",
    )
    warmup_epochs: int = Field(
        0,
        description="epochs trained without the perturbation before it starts (0: from the "
        "start; the paper's TRADES-AWP: 9 epochs, AT-AWP: 0)",
    )
