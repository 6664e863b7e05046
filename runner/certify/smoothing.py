"""CERTIFY and PREDICT (Cohen, Rosenfeld & Kolter 2019, Algorithms in Section 3.2) for a set of
examples at one noise level, each phase batched over all of them.

CERTIFY: c_A = the most frequent class of n0 noisy samples; n_A = how many of n fresh samples
are c_A; p_lower = the one-sided (1 - alpha) Clopper-Pearson lower bound on P(f(x + e) = c_A);
if p_lower > 1/2 return c_A with radius sigma * Phi^-1(p_lower), else abstain.

PREDICT: of n samples, the two most frequent classes c_A, c_B with counts n_A, n_B; return c_A
if the two-sided binomial test of n_A out of n_A + n_B at 1/2 has p-value <= alpha, else abstain.
Ties go to the lowest class index (``argmax``), which keeps the algorithms' guarantees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from runner.certify import bounds
from runner.certify.sampling import class_counts

ABSTAIN = -1


@dataclass(frozen=True)
class Settings:
    """One noise level's sampling: n0, n and PREDICT's samples, alpha, batch size and seed."""

    sigma: float
    n0: int
    n: int
    predict_n: int
    alpha: float
    batch_size: int
    seed: int


@dataclass(frozen=True)
class Outcome:
    """Per example: CERTIFY's class (or -1), n_A, p_lower and L2 radius (NaN when it abstained);
    PREDICT's class (or -1; all -1 when PREDICT was skipped) and its p-value."""

    certified: np.ndarray
    count: np.ndarray
    p_lower: np.ndarray
    radius: np.ndarray
    predicted: np.ndarray
    p_value: np.ndarray


def smooth(
    model: nn.Module, x: Tensor, examples: list[int], num_classes: int, s: Settings
) -> Outcome:
    """CERTIFY and PREDICT of the smoothed ``model`` for every example of ``x`` (test indices
    ``examples``, which key their noise)."""

    def counts(samples: int, phase: str) -> np.ndarray:
        c = class_counts(
            model, x, examples, samples, num_classes, s.sigma, phase, s.seed, s.batch_size
        )
        return c.cpu().numpy()

    top = counts(s.n0, "select").argmax(1)
    n_a = counts(s.n, "estimate")[np.arange(len(top)), top]
    p_lower = bounds.lower_bound(n_a, s.n, s.alpha)
    radius = bounds.radius(p_lower, s.sigma)
    certified = np.where(np.isnan(radius), ABSTAIN, top)
    predicted, p_value = _predict(counts(s.predict_n, "predict"), s)
    return Outcome(certified, n_a, p_lower, radius, predicted, p_value)


def _predict(c: np.ndarray, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    if s.predict_n <= 0:
        return np.full(len(c), ABSTAIN), np.full(len(c), np.nan)
    order = np.argsort(-c, axis=1, kind="stable")  # ties: the lowest class first, as argmax
    rows = np.arange(len(c))
    n_a, n_b = c[rows, order[:, 0]], c[rows, order[:, 1]]  # a data set has 2+ classes
    p = bounds.predict_pvalue(n_a, n_b)
    return np.where(p <= s.alpha, order[:, 0], ABSTAIN), p


def as_settings(sigma: float, cfg, batch_size: int | None = None) -> Settings:
    """The sampling settings of ``cfg`` (a :class:`runner.spec.certify.CertifySpec`) at ``sigma``."""
    return Settings(
        sigma=float(sigma),
        n0=cfg.n0,
        n=cfg.n,
        predict_n=cfg.predict_samples,
        alpha=cfg.alpha,
        batch_size=batch_size or cfg.batch_size,
        seed=cfg.seed,
    )
