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


def mean_std(values) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) across seeds, with n."""
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "n": int(v.size)}


def format_mean_std(values, digits: int = 3) -> str:
    """``0.812 ± 0.014 (n=3)``; a single seed shows no spread."""
    s = mean_std(values)
    if s["n"] == 0:
        return "n/a"
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f} (n=1)"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} (n={s['n']})"


def compare_runs(examples_a, examples_b, attack: str = "worst_case") -> dict[str, float]:
    """McNemar on two runs' per-example correctness under ``attack`` (same test examples).

    ``examples_*`` are the runs' examples.parquet frames; accuracy of each and the paired test.
    """
    a = examples_a[examples_a["attack"] == attack].sort_values("example")
    b = examples_b[examples_b["attack"] == attack].sort_values("example")
    if len(a) != len(b) or not np.array_equal(a["example"].to_numpy(), b["example"].to_numpy()):
        raise ValueError("the two runs were not evaluated on the same test examples")
    if "label" in a and not np.array_equal(a["label"].to_numpy(), b["label"].to_numpy()):
        raise ValueError("the two runs' test examples have different labels (another split?)")
    ca, cb = a["correct"].to_numpy(bool), b["correct"].to_numpy(bool)
    return {"accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()), **mcnemar(ca, cb)}


def paired_difference(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy of A minus accuracy of B on the same examples, with a percentile-bootstrap
    interval that resamples examples (pairs stay together), and the exact McNemar test."""
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("a paired difference needs the same examples in both runs")
    d = a - b
    diff = float(d.mean()) if d.size else float("nan")
    if d.size == 0 or n_boot <= 0:
        lo = hi = diff
    else:
        rng = np.random.default_rng(seed)
        # d takes the values -1, 0, 1: a resample is a multinomial draw of their counts, O(n_boot)
        p = [float(np.mean(d < 0)), float(np.mean(d == 0)), float(np.mean(d > 0))]
        counts = rng.multinomial(d.size, p, size=n_boot)
        means = (counts[:, 2] - counts[:, 0]) / d.size
        q = (1 - level) / 2
        lo, hi = float(np.quantile(means, q)), float(np.quantile(means, 1 - q))
    return {"diff": diff, "ci_low": lo, "ci_high": hi, **mcnemar(a > 0.5, b > 0.5)}
