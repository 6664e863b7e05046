"""What one noise level's certification reports: per-example rows, result rows, a summary.

Counting (as in Cohen et al.'s analysis and ART issue 699's answer): an example is *certified at
radius r* when CERTIFY returned its true class with a radius >= r. Every certified example is in
the denominator: an abstention (p_lower <= 1/2) is not certified at any radius, and is counted
apart (``abstained``) rather than removed. Intervals are two-sided 95% Clopper-Pearson intervals
over the certified examples (exact binomial, no resampling). The average certified radius (ACR,
Zhai et al. 2020) is the mean over all examples of the radius when certified correctly, else 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from runner.certify.bounds import interval
from runner.certify.smoothing import ABSTAIN, Outcome
from runner.spec.certify import CertifySpec

INTERVAL = "clopper-pearson"


def linf_radius(radius: float, dim: int) -> float:
    """The L-inf radius an L2 certificate of ``radius`` implies: ||d||_2 <= sqrt(dim) ||d||_inf,
    so the L-inf ball of radius r / sqrt(dim) lies inside the certified L2 ball."""
    return radius / math.sqrt(dim)


def certified_name(sigma: float) -> str:
    """The ``attack`` of a noise level's rows in examples.parquet."""
    return f"certified[sigma={sigma:g}]"


def per_sigma_results(
    o: Outcome,
    y: np.ndarray,
    idx: list[int],
    sigma: float,
    cfg: CertifySpec,
    pixel_range: tuple[float, float],
    dim: int,
) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, Any]]:
    """(examples frame, results rows, summary) of one noise level."""
    correct = o.certified == y
    got = np.where(correct, o.radius, 0.0)  # the radius behind the curve; 0: not certified
    n = len(y)
    abstained = int(np.sum(o.certified == ABSTAIN))
    curve = []
    for r in cfg.curve(pixel_range):
        k = int(np.sum(correct & (got >= r)))
        lo, hi = interval(k, n)
        curve.append({"radius": r, "linf_radius": linf_radius(r, dim),
                      "accuracy": k / n if n else float("nan"), "ci_low": lo, "ci_high": hi,
                      "certified": k})  # fmt: skip
    summary: dict[str, Any] = {
        "sigma": sigma, "n0": cfg.n0, "n": cfg.n, "alpha": cfg.alpha,
        "predict_n": cfg.predict_samples, "n_examples": n, "skip": cfg.skip, "seed": cfg.seed,
        "dim": dim, "abstained": abstained, "abstain_rate": abstained / n if n else float("nan"),
        "acr": float(got.mean()) if n else float("nan"),
        "acr_linf": linf_radius(float(got.mean()), dim) if n else float("nan"),
        "interval": INTERVAL, "curve": curve,
    }  # fmt: skip
    rows = [_certified_row(sigma, p, n, abstained) for p in curve]
    if cfg.predict_samples > 0:
        summary.update(_smoothed(o, y))
        rows.insert(0, _smoothed_row(sigma, summary, n))
    return _frame(o, y, idx, sigma, got, dim), rows, summary


def _smoothed(o: Outcome, y: np.ndarray) -> dict[str, Any]:
    """PREDICT's clean accuracy of the smoothed classifier (abstentions count as wrong)."""
    k, n = int(np.sum(o.predicted == y)), len(y)
    lo, hi = interval(k, n)
    return {
        "smoothed_accuracy": k / n if n else float("nan"),
        "smoothed_ci_low": lo,
        "smoothed_ci_high": hi,
        "smoothed_abstained": int(np.sum(o.predicted == ABSTAIN)),
    }


def _smoothed_row(sigma: float, s: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "attack": f"smoothed[sigma={sigma:g}]", "kind": "predict", "norm": "l2", "eps": 0.0,
        "accuracy": s["smoothed_accuracy"], "n": n, "ci_low": s["smoothed_ci_low"],
        "ci_high": s["smoothed_ci_high"], "scope": "smoothed", "sigma": sigma,
        "abstained": s["smoothed_abstained"],
    }  # fmt: skip


def _certified_row(sigma: float, p: dict[str, Any], n: int, abstained: int) -> dict[str, Any]:
    return {
        "attack": f"{certified_name(sigma)}@{p['radius']:g}", "kind": "certify", "norm": "l2",
        "eps": p["radius"], "accuracy": p["accuracy"], "n": n, "ci_low": p["ci_low"],
        "ci_high": p["ci_high"], "scope": "certified", "sigma": sigma, "radius": p["radius"],
        "linf_radius": p["linf_radius"], "abstained": abstained,
    }  # fmt: skip


def _frame(
    o: Outcome, y: np.ndarray, idx: list[int], sigma: float, got: np.ndarray, dim: int
) -> pd.DataFrame:
    """One row per certified example, beside the attack rows of examples.parquet."""
    n = len(y)
    return pd.DataFrame(
        {
            "example": np.asarray(idx, dtype=np.int64),
            "attack": certified_name(sigma),
            "label": y,
            "pred": o.certified,  # -1: CERTIFY abstained
            "correct": o.certified == y,
            "attacked": np.zeros(n, dtype=bool),
            "margin": np.full(n, np.nan, dtype=np.float32),
            "distance": np.full(n, np.nan, dtype=np.float32),
            "broken_by": np.full(n, "", dtype=object),
            "sigma": sigma,
            "radius": o.radius,  # L2, of CERTIFY's class; NaN when it abstained
            "certified_radius": got,  # the radius when the class is right, else 0
            "linf_radius": got / math.sqrt(dim),
            "p_lower": o.p_lower,
            # nullable types: the attack rows of examples.parquet have none of these
            "count": pd.array(o.count, dtype="Int64"),
            "abstained": pd.array(o.certified == ABSTAIN, dtype="boolean"),
            "smoothed_pred": pd.array(o.predicted, dtype="Int64"),  # PREDICT; -1: abstained
        }
    )
