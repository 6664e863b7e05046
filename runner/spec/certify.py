"""The ``certify:`` block: randomized-smoothing certification (Cohen, Rosenfeld & Kolter 2019).

Every evaluated model is also certified: the smoothed classifier g(x) = argmax_c P(f(x + e) = c),
e ~ N(0, sigma^2 I), gets for each test example an L2 radius within which its prediction provably
does not change (with probability at least 1 - alpha over the noise). Pure: no torch here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema

from runner.spec.base import MAX_BATCH, MAX_EXAMPLES, MAX_SEED, StrictModel, describe_value

TRAIN = "train"  # a sigma entry: the run's own training noise (gaussian_augment, smooth_adv)
MAX_SAMPLES = 10_000_000  # noise samples per example; the paper's n is 100,000
MAX_SIGMAS = 20
MAX_RADII = 200
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)  # times the pixel range's width

Problem = tuple[tuple[Any, ...], str]


def _sigma_item(value: Any) -> float | str:
    if value == TRAIN:
        return TRAIN
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"sigma must be a number > 0 (pixel units) or 'train', got {describe_value(value)}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"sigma {value} must be a finite number > 0: the standard deviation of the Gaussian "
            "noise, in pixel units"
        )
    return float(value)


def _sigmas(value: Any) -> list[float | str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("sigma: an empty list certifies nothing; give one value or several")
    if len(items) > MAX_SIGMAS:
        raise ValueError(f"sigma: {len(items)} values, more than the limit of {MAX_SIGMAS}")
    out = [_sigma_item(v) for v in items]
    if len(set(out)) != len(out):
        raise ValueError(f"sigma {out} repeats a value; give each noise level once")
    return out


_SIGMA_ITEM = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"const": TRAIN}]}
Sigmas = Annotated[
    Any,
    PlainValidator(_sigmas),
    WithJsonSchema({"anyOf": [*_SIGMA_ITEM["anyOf"], {"type": "array", "items": _SIGMA_ITEM}]}),
]


class CertifySpec(StrictModel):
    """Randomized-smoothing certification of every evaluated model (CERTIFY and PREDICT of
    Cohen et al. 2019), at one or several noise levels."""

    sigma: Sigmas = Field(
        ...,
        description="noise level(s): the standard deviation of the Gaussian noise in pixel units "
        "(sigma / (high - low) of pixel_range on [0, 1] images), one or a list; 'train' is the "
        "run's own training noise (the sigma of a gaussian_augment or smooth_adv recipe)",
    )
    n0: int = Field(
        100,
        ge=1,
        le=MAX_SAMPLES,
        description="selection samples per example: the top class of the smoothed classifier",
    )
    n: int = Field(
        100_000,
        ge=1,
        le=MAX_SAMPLES,
        description="estimation samples per example: the Clopper-Pearson lower bound on the top "
        "class's probability (the paper's 100,000; smaller for smoke runs)",
    )
    alpha: float = Field(
        0.001,
        gt=0,
        lt=0.5,
        description="failure probability of each certificate and of each PREDICT test, in (0, 0.5)",
    )
    predict_n: int | None = Field(
        None,
        ge=0,
        le=MAX_SAMPLES,
        description="samples of PREDICT (the smoothed classifier's prediction with its own "
        "binomial test: its clean accuracy); default n; 0 skips PREDICT",
    )
    batch_size: int = Field(
        1024,
        ge=1,
        le=MAX_BATCH,
        description="noisy samples per forward pass (several examples share a pass)",
    )
    radii: list[Annotated[float, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_RADII,
        description="L2 radii (pixel units) of the certified-accuracy curve; default 0 to 1.5 "
        "in steps of 0.25 times the width of pixel_range",
    )
    n_examples: int = Field(
        500,
        ge=1,
        le=MAX_EXAMPLES,
        description="test examples certified (at most the test split)",
    )
    skip: int = Field(
        1,
        ge=1,
        le=MAX_EXAMPLES,
        description="certify every skip-th test example (the paper: 20, 500 of CIFAR-10's 10,000)",
    )
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="seed of the noise (each example has its own streams)"
    )

    @property
    def predict_samples(self) -> int:
        return self.n if self.predict_n is None else self.predict_n

    def curve(self, pixel_range: tuple[float, float]) -> list[float]:
        """The radii of the curve, in pixel units."""
        if self.radii is not None:
            return sorted({float(r) for r in self.radii})
        width = float(pixel_range[1]) - float(pixel_range[0])
        return [r * width for r in DEFAULT_RADII]


def check(spec: Any) -> Iterator[Problem]:
    """Cross-field problems of ``spec.certify``: n0 < n; 'train' needs a recipe with sigma."""
    c = getattr(spec, "certify", None)
    if c is None:
        return
    if c.n0 >= c.n:
        yield (
            ("certify", "n0"),
            f"n0 {c.n0} must be smaller than n {c.n}: n0 samples only pick the top class, the "
            "n fresh ones bound its probability (the paper: n0 100, n 100,000)",
        )
    if TRAIN in c.sigma and not any(hasattr(r, "sigma") for r in spec.recipes):
        yield (
            ("certify", "sigma"),
            "sigma 'train' is the run's training noise, but no recipe trains with noise; add a "
            "gaussian_augment or smooth_adv recipe, or give sigma as a number",
        )


def check_certified_goals(spec: Any, tune: Any) -> Iterator[Problem]:
    """Tuning objectives on randomized smoothing: a certify block, a radius on its curve, a
    noise level it certifies (named when it certifies several)."""
    c = getattr(spec, "certify", None)
    for i, goal in enumerate(tune.goals):
        where = ("tune", "objectives", i) if tune.objectives else ("tune", "objective")
        certified = goal.metric in ("certified_accuracy", "smoothed_accuracy")
        if not certified:
            for key in ("radius", "sigma"):
                if getattr(goal, key) is not None:
                    yield (*where, key), f"{key} applies to certified_accuracy/smoothed_accuracy"
            continue
        if c is None:
            yield where, f"{goal.metric} needs a certify: block (randomized smoothing) in the spec"
            continue
        if goal.attack is not None:
            yield (*where, "attack"), f"{goal.metric} is not measured by an attack; remove attack"
        if tune.mode != "train":
            yield where, f"{goal.metric} is an objective of mode: train"
        yield from _goal_radius(goal, where, c, spec)
        yield from _goal_sigma(goal, where, c)


def _goal_radius(goal: Any, where: tuple[Any, ...], c: CertifySpec, spec: Any) -> Iterator[Problem]:
    radii = c.curve(spec.threat.pixel_range)
    if goal.metric == "smoothed_accuracy":
        if goal.radius is not None:
            yield (*where, "radius"), "smoothed_accuracy has no radius (PREDICT's clean accuracy)"
        elif c.predict_samples == 0:
            yield where, "smoothed_accuracy needs PREDICT: certify.predict_n is 0"
        return
    shown = ", ".join(f"{r:g}" for r in radii)
    if goal.radius is None:
        yield where, f"certified_accuracy needs radius: one of certify's radii ({shown})"
    elif not any(abs(goal.radius - r) <= 1e-9 * max(1.0, r) for r in radii):
        yield (*where, "radius"), f"radius {goal.radius:g} is not on the curve; radii: {shown}"


def _goal_sigma(goal: Any, where: tuple[Any, ...], c: CertifySpec) -> Iterator[Problem]:
    listed = ", ".join(f"{s:g}" if s != TRAIN else TRAIN for s in c.sigma)
    if goal.sigma is None and len(c.sigma) > 1:
        yield where, f"certify has several noise levels ({listed}): name one with sigma"
    elif goal.sigma is not None and goal.sigma not in c.sigma:
        yield (*where, "sigma"), f"sigma {goal.sigma} is not certified; certify.sigma: {listed}"


def notes(spec: Any) -> list[str]:
    """What a user should know about a valid certify block (printed by validate and plan)."""
    c = getattr(spec, "certify", None)
    if c is None or spec.threat.norm != "linf":
        return []
    return [
        "certify: randomized smoothing certifies an L2 radius r; the threat model is L-inf, and an "
        "L2 certificate of radius r implies an L-inf one of radius r/sqrt(d) (d: input values, "
        "e.g. 64 for digits, 3072 for CIFAR-10), shown beside every certified radius"
    ]
