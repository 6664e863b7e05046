"""Uncertainty of accuracies: bootstrap confidence intervals, seed spread, paired tests."""

from __future__ import annotations

import math

import numpy as np


def bootstrap_ci(
    correct: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of a 0/1 vector (resampling examples)."""
    c = np.asarray(correct, dtype=np.float64)
    if c.size == 0:
        return float("nan"), float("nan")
    if n_boot <= 0:
        return float(c.mean()), float(c.mean())
    rng = np.random.default_rng(seed)
    # The mean of a resample of 0/1 values is Binomial(n, p)/n: draw that directly, O(n_boot).
    means = rng.binomial(c.size, c.mean(), size=n_boot) / c.size
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Exact McNemar test on paired per-example correctness (same test examples)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("McNemar needs the same examples in both runs")
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    n = only_a + only_b
    if n == 0:
        p = 1.0
    else:
        k = min(only_a, only_b)
        # two-sided exact binomial test with p = 1/2
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        p = min(1.0, 2 * tail)
    return {"only_a": only_a, "only_b": only_b, "p_value": p}
