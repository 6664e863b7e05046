"""Inline SVG figures from the report's data (nothing here reads files or computes results)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from runner.report import svg
from runner.report.tables import WORST

COLUMN_NAMES = {"clean": "clean", WORST: "worst case"}


def comparison_bars(report: dict[str, Any]) -> Markup | None:
    columns = report["comparison"]["columns"]
    many = len(report["experiments"]) > 1
    groups = []
    for exp in report["experiments"]:
        for g in exp["groups"]:
            cells = [g["cells"].get(c) for c in columns]
            if not any(cells):
                continue
            label = f"{exp['label']}: {g['group']}" if many else g["group"]
            groups.append(
                (
                    label,
                    [c["mean"] if c else None for c in cells],
                    [c["ci_low"] if c else None for c in cells],
                    [c["ci_high"] if c else None for c in cells],
                )
            )
    if not groups:
        return None
    width = max(720, 120 * len(columns) + 260)
    return svg.bar_plot(
        [COLUMN_NAMES.get(c, c) for c in columns],
        groups,
        "Accuracy at the threat model (mean over seeds, 95% CI)",
        "accuracy",
        width=width,
    )


def training_plots(exp: dict[str, Any]) -> dict[str, Markup]:
    out = {}
    for g in exp["training"]:
        series = []
        many = len(g["runs"]) > 1
        for i, r in enumerate(g["runs"]):
            # one colour per seed; solid = clean, dashed = robust (as the section text says)
            c = svg.color(i) if many else svg.color(0)
            c2 = c if many else svg.color(1)
            tag = f"seed {r['seed']}: " if many else ""
            series.append(svg.Series(f"{tag}clean", r["epoch"], r["val_clean"], c))
            series.append(svg.Series(f"{tag}robust", r["epoch"], r["val_robust"], c2, dash=True))
        out[g["group"]] = svg.line_plot(
            series, g["group"], "epoch", "validation accuracy", width=500, height=280, ylim=(0, 1)
        )
    return out


def curve_plots(exp: dict[str, Any]) -> dict[str, Markup]:
    out = {}
    for c in exp["robustness_curves"]:
        series = [
            svg.Series(s["group"], s["eps"], s["accuracy"], lo=s["ci_low"], hi=s["ci_high"])
            for s in c["series"]
        ]
        out[c["attack"]] = svg.line_plot(
            series, f"{c['attack']}: accuracy against eps", "eps", "accuracy", ylim=(0, 1)
        )
    return out


def certified_plots(exp: dict[str, Any]) -> dict[str, Markup]:
    """Per noise level: certified accuracy against the L2 radius, one line per model x recipe
    (mean over seeds; the band is the 95% Clopper-Pearson interval, or the seeds' envelope)."""
    out = {}
    for level in exp.get("certified") or []:
        series = [
            svg.Series(
                row["group"],
                [p["radius"] for p in row["points"]],
                [p["accuracy"] for p in row["points"]],
                lo=[p["ci_low"] for p in row["points"]],
                hi=[p["ci_high"] for p in row["points"]],
            )
            for row in level["rows"]
        ]
        name = f"sigma={level['sigma']:g}"
        out[name] = svg.line_plot(
            series,
            f"Certified accuracy against L2 radius ({name})",
            "L2 radius (pixel units)",
            "certified accuracy",
            ylim=(0, 1),
        )
    return out


def tuning_plots(exp: dict[str, Any]) -> dict[str, Markup]:
    t = exp["tuning"]
    if not t:
        return {}
    out = {}
    trials = [x for x in t["trials"] if x["value"] is not None]
    if trials:
        name = t["objectives"][0]
        out["history"] = svg.line_plot(
            [
                svg.Series(
                    f"{name} per trial",
                    [x["number"] for x in trials],
                    [x["value"] for x in trials],
                    points_only=True,
                ),
                svg.Series(
                    f"best so far ({t['directions'][0]})",
                    [x["number"] for x in t["trials"]],
                    [x["best_so_far"] for x in t["trials"]],
                    svg.color(1),
                ),
            ],
            "Optimisation history",
            "trial",
            name,
        )
    if t["importances"]:
        out["importances"] = svg.hbar_plot(
            [k for k, _ in t["importances"]],
            [v for _, v in t["importances"]],
            "Parameter importances",
            "importance (Optuna param_importances, normalised to sum to 1)",
        )
    multi = [x for x in t["trials"] if len(x.get("values") or []) >= 2 and x["value"] is not None]
    if len(t["directions"]) >= 2 and multi:
        front = set(t["pareto_numbers"])
        out["pareto"] = svg.line_plot(
            [
                svg.Series(
                    "trials (filled: Pareto front)",
                    [x["values"][0] for x in multi],
                    [x["values"][1] for x in multi],
                    points_only=True,
                    highlight=[x.get("number") in front for x in multi],
                )
            ],
            "Pareto front",
            t["objectives"][0],
            t["objectives"][1],
        )
    return out


def poisoning_plot(exp: dict[str, Any]) -> Markup | None:
    p = exp["poisoning"]
    if not p or not p["rows"]:
        return None
    rows = p["rows"]
    return svg.bar_plot(
        [r["group"] for r in rows],
        [
            (
                "attack success rate",
                [r["asr"] for r in rows],
                [r["ci_low"] for r in rows],
                [r["ci_high"] for r in rows],
            ),
            ("clean accuracy", [r["clean"] for r in rows], [None] * len(rows), [None] * len(rows)),
        ],
        "Backdoor: attack success rate and clean accuracy",
        "fraction",
    )


def releases_plot(report: dict[str, Any]) -> Markup | None:
    """Clean and worst-case accuracy per release (95% interval bands): drift at a glance."""
    rel = report.get("releases")
    if not rel or not rel.get("comparable") or not rel["series"]:
        return None
    xs = list(range(1, len(rel["labels"]) + 1))
    series = [
        svg.Series(
            s["name"],
            xs,
            s["mean"],
            svg.color(i),
            dash=s["metric"] == WORST,
            lo=s["ci_low"],
            hi=s["ci_high"],
        )
        for i, s in enumerate(rel["series"])
    ]
    return svg.line_plot(
        series,
        "Accuracy per release (95% CI)",
        "release (in the order given)",
        "accuracy",
        width=max(640, 90 * len(xs) + 260),
        ylim=(0, 1),
        xnames={float(x): lab for x, lab in zip(xs, rel["labels"], strict=True)},
    )


def figures(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "comparison": comparison_bars(report),
        "releases": releases_plot(report),
        "experiments": [
            {
                "training": training_plots(e),
                "curves": curve_plots(e),
                "certified": certified_plots(e),
                "tuning": tuning_plots(e),
                "poisoning": poisoning_plot(e),
            }
            for e in report["experiments"]
        ],
    }
