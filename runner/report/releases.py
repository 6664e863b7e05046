"""The monitoring view: clean and worst-case accuracy per release of the same model, over time.

``advrun report REL1 REL2 ...`` with output directories that are releases of one model (the same
data and threat model, in the order given: oldest first) gets a time series, so a drift in
robustness shows at a glance. Directories with other data or another threat model are not a
series: the view says which differ instead of drawing a meaningless line.
"""

from __future__ import annotations

from typing import Any

from runner.report.tables import CLEAN, WORST

METRICS = ((CLEAN, "clean"), (WORST, "worst case"))
DRIFT_POINTS = 2.0  # a fall of the worst case by more than this between releases is flagged


def _signature(exp: dict[str, Any]) -> tuple[Any, Any]:
    threat = exp.get("threat") or {}
    key = (threat.get("norm"), threat.get("eps"), tuple(threat.get("pixel_range") or ()))
    return tuple(exp["provenance"]["data_sha256"]), key


def releases(experiments: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The series across experiments, or why there is none (None for a single directory)."""
    if len(experiments) < 2:
        return None
    sigs = [_signature(e) for e in experiments]
    data = {s[0] for s in sigs}
    threats = {s[1] for s in sigs}
    why = []
    if len(data) > 1 or any(len(d) != 1 for d in data):
        why.append("they were evaluated on different data (data hashes differ)")
    if len(threats) > 1:
        why.append("their threat models differ")
    if why:
        return {"comparable": False, "why": "; ".join(why)}
    labels = [e["label"] for e in experiments]
    groups = list(dict.fromkeys(g["group"] for e in experiments for g in e["groups"]))
    series, rows = [], []
    for group in groups:
        for metric, name in METRICS:
            cells = []
            for e in experiments:
                g = next((g for g in e["groups"] if g["group"] == group), None)
                cells.append((g or {}).get("cells", {}).get(metric))
            if not any(cells):
                continue
            series.append(
                {
                    "group": group,
                    "metric": metric,
                    "name": f"{group}: {name}" if len(groups) > 1 else name,
                    "mean": [c["mean"] if c else None for c in cells],
                    "ci_low": [c["ci_low"] if c else None for c in cells],
                    "ci_high": [c["ci_high"] if c else None for c in cells],
                }
            )
    for i, e in enumerate(experiments):
        row = {"index": i + 1, "label": e["label"], "dir": e["dir"]}
        row["finished"] = e["provenance"].get("finished")
        row["values"] = {s["name"]: (s["mean"][i], s["ci_low"][i], s["ci_high"][i]) for s in series}
        rows.append(row)
    drift = []
    for s in (s for s in series if s["metric"] == WORST):
        for i in range(1, len(labels)):
            a, b = s["mean"][i - 1], s["mean"][i]
            if a is not None and b is not None and 100 * (a - b) > DRIFT_POINTS:
                drift.append(
                    {"group": s["group"], "from": labels[i - 1], "to": labels[i], "drop": a - b}
                )
    return {
        "comparable": True,
        "labels": labels,
        "series": series,
        "rows": rows,
        "drift": drift,
        "drift_points": DRIFT_POINTS,
    }
