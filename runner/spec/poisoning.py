"""The ``poisoning:`` block: a simulated backdoor attacker on the training set.

The attacker stamps a trigger (ART's backdoor patterns) onto a fraction of the training images
from other classes and relabels them as the target class. Evaluation then reports the attack
success rate (ASR) beside clean and robust accuracy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from runner import expr
from runner.spec.base import MAX_SEED, Expr, StrictModel


class PoisoningSpec(StrictModel):
    """A backdoor poisoning attack on the training data (ART's PoisoningAttackBackdoor)."""

    trigger: Literal["pattern", "pixel"] = Field(
        "pattern",
        description="pattern: ART's add_pattern_bd (a 4-pixel checkerboard near the bottom-right "
        "corner); pixel: ART's add_single_bd (one pixel)",
    )
    target: int = Field(0, ge=0, description="the class the attacker wants triggered images to get")
    fraction: float = Field(
        0.1, gt=0, lt=1, description="share of the training set replaced by poisoned images"
    )
    distance: int = Field(
        1, ge=1, description="trigger offset from the bottom-right corner in pixels (1: the corner)"
    )
    pixel_value: Expr | None = Field(
        None,
        description="value of the trigger pixels in pixel units (default: the top of pixel_range, "
        "so the trigger is visible on a dark background)",
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="seed of which training images are poisoned (0 to 2**32-1; fixed across run "
        "seeds)",
    )


def check(spec: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    """The trigger's pixel value lies in the pixel range; the result name 'asr' is free."""
    p = getattr(spec, "poisoning", None)
    if p is None:
        return
    for i, attack in enumerate(spec.attacks):
        if attack.name == "asr":
            yield (
                ("attacks", i, "name"),
                ("'asr' is reserved for the backdoor attack success rate; pick another name"),
            )
    if p.pixel_value is None:
        return
    lo, hi = spec.threat.pixel_range
    try:
        value = expr.evaluate(p.pixel_value)
    except ValueError as e:
        yield ("poisoning", "pixel_value"), str(e)
        return
    if not lo <= value <= hi:
        yield (
            ("poisoning", "pixel_value"),
            f"pixel_value {value:g} is outside pixel_range [{lo:g}, {hi:g}]",
        )
