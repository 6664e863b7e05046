"""The statistics of randomized smoothing, vectorised over examples (SciPy).

- :func:`lower_bound`: the one-sided (1 - alpha) Clopper-Pearson lower bound on a binomial
  proportion, ``Beta.ppf(alpha, k, n - k + 1)`` (``statsmodels``' ``proportion_confint(k, n,
  alpha=2 * alpha, method="beta")[0]``, which Cohen et al. and ART use).
- :func:`radius`: the certified L2 radius ``sigma * Phi^-1(p_lower)`` (Theorem 1 with
  p_B = 1 - p_A), or NaN where CERTIFY abstains (p_lower <= 1/2).
- :func:`predict_pvalue`: the two-sided binomial test of PREDICT (n_A of n_A + n_B at 1/2,
  ``scipy.stats.binomtest``).
- :func:`interval`: a two-sided 95% Clopper-Pearson interval on an accuracy (examples are
  independent test draws; exact, no resampling).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def lower_bound(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) lower confidence bound on p from k successes in n trials."""
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        p = stats.beta.ppf(alpha, k, n - k + 1)
    return np.where(k > 0, p, 0.0)


def radius(p_lower: np.ndarray, sigma: float) -> np.ndarray:
    """sigma * Phi^-1(p_lower) where p_lower > 1/2, else NaN (CERTIFY abstains)."""
    p = np.asarray(p_lower, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sigma * stats.norm.ppf(p)
    return np.where(p > 0.5, r, np.nan)


def predict_pvalue(n_a: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """Two-sided p-value of n_a successes in n_a + n_b trials at p = 1/2 (vectorised
    ``scipy.stats.binomtest(n_a, n_a + n_b, 0.5).pvalue``: the distribution is symmetric, so
    it is twice the tail of the smaller count, capped at 1)."""
    a = np.asarray(n_a, dtype=np.int64)
    b = np.asarray(n_b, dtype=np.int64)
    tail = stats.binom.cdf(np.minimum(a, b), a + b, 0.5)
    return np.where(a == b, 1.0, np.minimum(1.0, 2.0 * tail))


def interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of k/n (NaN, NaN for n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi
