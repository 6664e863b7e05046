"""The report's certified-robustness section: randomized smoothing per noise level.

Per sigma, one row per model x recipe: the smoothed classifier's clean accuracy (PREDICT), the
certified accuracy at each L2 radius of the curve (mean over seeds; the interval is the seed's
Clopper-Pearson interval, or the envelope of the seeds' intervals), abstentions and the average
certified radius; with the certification's parameters and the L-inf radius each L2 radius implies.
"""

from __future__ import annotations

import statistics
from typing import Any

from runner.report.tables import _f

PARAMS = ("n0", "n", "alpha", "predict_n", "n_examples", "skip", "seed", "dim", "interval")


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in (_f(x) for x in values) if v is not None]
    return statistics.fmean(vals) if vals else None


def _point(points: list[dict[str, Any]]) -> dict[str, Any]:
    lows = [v for v in (_f(p.get("ci_low")) for p in points) if v is not None]
    highs = [v for v in (_f(p.get("ci_high")) for p in points) if v is not None]
    return {
        "radius": points[0]["radius"],
        "linf_radius": points[0].get("linf_radius"),
        "accuracy": _mean([p.get("accuracy") for p in points]),
        "ci_low": min(lows) if lows else None,
        "ci_high": max(highs) if highs else None,
    }


def _row(group: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One model x recipe at one sigma, over its seeds."""
    by_radius: dict[float, list[dict[str, Any]]] = {}
    for s in summaries:
        for p in s.get("curve") or []:
            by_radius.setdefault(float(p["radius"]), []).append(p)
    smoothed = [s for s in summaries if s.get("smoothed_accuracy") is not None]
    return {
        "group": group,
        "seeds": len(summaries),
        "smoothed": _mean([s["smoothed_accuracy"] for s in smoothed]) if smoothed else None,
        "smoothed_ci_low": min((s["smoothed_ci_low"] for s in smoothed), default=None),
        "smoothed_ci_high": max((s["smoothed_ci_high"] for s in smoothed), default=None),
        "abstain_rate": _mean([s.get("abstain_rate") for s in summaries]),
        "acr": _mean([s.get("acr") for s in summaries]),
        "acr_linf": _mean([s.get("acr_linf") for s in summaries]),
        "points": [_point(by_radius[r]) for r in sorted(by_radius)],
    }


def certified(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per noise level (in the order first met): its parameters and one row per group."""
    levels: dict[float, dict[str, list[dict[str, Any]]]] = {}
    params: dict[float, dict[str, Any]] = {}
    for r in runs:
        for s in r.get("certified") or []:
            sigma = float(s["sigma"])
            levels.setdefault(sigma, {}).setdefault(r["group"], []).append(s)
            params.setdefault(sigma, {k: s.get(k) for k in PARAMS})
    out = []
    for sigma, groups in levels.items():
        rows = [_row(g, summaries) for g, summaries in groups.items()]
        radii = sorted({p["radius"] for row in rows for p in row["points"]})
        linf = {p["radius"]: p["linf_radius"] for row in rows for p in row["points"]}
        out.append({"sigma": sigma, "params": params[sigma], "radii": radii,
                    "linf_radii": [linf[r] for r in radii], "rows": rows})  # fmt: skip
    return out
