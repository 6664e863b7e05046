"""Budget rules shared by the threat model, recipes, attacks and tuning: eps and step sizes.

Each yields ``(key path, message)`` pairs (pure; imports no other spec module).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Problem = tuple[tuple[Any, ...], str]


def check_eps(eps: float, lo: float, hi: float, where: tuple[Any, ...]) -> Iterator[Problem]:
    """An eps must be positive and fit the pixel range; catch 0-255 units on a [0, 1] range."""
    width = hi - lo
    if eps <= 0:
        yield where, f"eps {eps:g} must be positive"
    elif width <= 1 and 1 < eps <= 255:
        yield (
            where,
            (
                f"eps {eps:g} looks like it is in 0-255 units, but pixel_range is [{lo:g}, {hi:g}]; "
                f"write it as {eps:g}/255"
            ),
        )
    elif eps > width:
        yield (
            where,
            (
                f"eps {eps:g} is larger than the pixel range [{lo:g}, {hi:g}]: every image would be "
                "reachable from every other; use a budget well inside the range"
            ),
        )


def check_steps(
    eps: float, step: float, steps: int, where: tuple[Any, ...], iterative: bool = True
) -> Iterator[Problem]:
    """Step sizes that overshoot the ball, or that can never reach its boundary."""
    if step <= 0:
        yield (*where, "step_size"), f"step_size {step:g} must be positive"
        return
    if step > eps:
        yield (
            (*where, "step_size"),
            (
                f"step_size {step:g} is larger than eps {eps:g}: each step overshoots the ball and is "
                "projected back, so the attack jumps between corners; use at most eps (eps/4 is usual)"
            ),
        )
    elif iterative and steps * step < eps * (1 - 1e-9):
        yield (
            (*where, "steps"),
            (
                f"steps x step_size = {steps} x {step:g} = {steps * step:g} < eps {eps:g}: PGD cannot "
                "reach the boundary of the ball; raise steps or step_size (e.g. step_size 2.5*eps/steps)"
            ),
        )
