"""How far two noisy accuracies may differ in a test (the project's rule: a tolerance between two
noisy numbers is at least 3-4 standard errors at its n, or the comparison is exact).

Two kinds of pairs, two tools:
- two attacks (or engines) on one fixed model and the same examples: the noise is per example
  (random starts, float rounding flipping an example at the boundary), so the exact McNemar test
  on the discordant examples is the right paired test (`assert_same_accuracy`);
- two trained models: training noise moves many examples at once, so a paired test on the test
  set would reject equal training procedures far too often (measured: 3 of 66 seed pairs at
  p < 0.001 on clean digits accuracy); use the binomial SE of the difference from n instead
  (`se_difference`), which bounded the measured seed spread on digits.
"""

from __future__ import annotations

import math

import numpy as np

from runner.stats import mcnemar

ALPHA = 1e-3  # a two-sided p < 0.001 is a gap beyond ~3.3 paired standard errors


def se_difference(p: float, n: int, runs: int = 1) -> float:
    """SE of the difference of two accuracies near ``p`` on ``n`` examples, each the mean over
    ``runs`` independent trainings: sqrt(2 p (1 - p) / (n runs))."""
    return math.sqrt(2 * p * (1 - p) / (n * runs))


def assert_same_accuracy(
    correct_a, correct_b, floor: float, *, at_most: bool = False, what: str = ""
) -> None:
    """Two attacks on one model: accuracy A within ``floor`` of B (with ``at_most``: A at most
    B + ``floor``, i.e. attack A at least about as strong), or else a gap that the exact McNemar
    test on the per-example outcomes does not call real at p < 0.001.

    The floor is the old fixed tolerance (a few examples of float-rounding flips, where both
    sides are deterministic); past it a gap fails only when it is significant, so the test keeps
    catching a broken implementation (a one-sided gap of 11 examples already gives p < 0.001)
    while chance alone fails it in under 0.1% of runs.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    diff = float(a.mean() - b.mean())
    if (diff if at_most else abs(diff)) <= floor + 1e-9:
        return
    r = mcnemar(a, b)
    se = math.sqrt(r["only_a"] + r["only_b"]) / len(a)
    assert r["p_value"] >= ALPHA, (
        f"{what}: accuracy {a.mean():.4f} vs {b.mean():.4f} on {len(a)} examples (paired SE "
        f"{se:.4f}); only A right {r['only_a']}, only B right {r['only_b']}, McNemar p "
        f"{r['p_value']:.2g}"
    )
