"""The report's data sections beyond the comparison table: curves, tuning, poisoning, checklist,
provenance and the paired test between the two best defenses."""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from runner.report.collect import Experiment
from runner.report.tables import CLEAN, WORST, _f
from runner.spec.load import spec_sha256

# A validation robust accuracy that falls by this much from its best epoch, to below half of it,
# is the signature of catastrophic overfitting (Wong et al. 2020; Rice et al. 2020).
COLLAPSE_DROP = 0.2


def collapse(epochs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first epoch at which validation robust accuracy collapsed, if it did."""
    best, best_epoch = -1.0, None
    for row in epochs:
        v = _f(row.get("val_robust"))
        if v is None:
            continue
        if best_epoch is not None and v < best - COLLAPSE_DROP and v < best / 2:
            return {"epoch": row.get("epoch"), "from": best, "from_epoch": best_epoch, "to": v}
        if v > best:
            best, best_epoch = v, row.get("epoch")
    return None


def training(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model x recipe: each seed's validation clean/robust accuracy per epoch."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        if not r["epochs"]:
            continue
        g = out.setdefault(r["group"], {"group": r["group"], "runs": []})
        g["runs"].append(
            {
                "id": r["id"],
                "seed": r["seed"],
                "epoch": [e.get("epoch") for e in r["epochs"]],
                "val_clean": [_f(e.get("val_clean")) for e in r["epochs"]],
                "val_robust": [_f(e.get("val_robust")) for e in r["epochs"]],
                "loss": [_f(e.get("loss")) for e in r["epochs"]],
                "best_epoch": r["best_epoch"],
                "stopped_early": r["stopped_early"],
                "collapse": collapse(r["epochs"]),
            }
        )
    return list(out.values())


def robustness_curves(exp: Experiment, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per attack: accuracy against eps for each model x recipe (mean over seeds)."""
    points: list[dict[str, Any]] = []
    group_of = {r["id"]: r["group"] for r in runs}
    for r in runs:
        for p in r["curves"] or []:
            points.append({**p, "group": r["group"], "run_id": r["id"]})
    if not points and exp.curves_csv:
        points = [
            {**p, "group": group_of.get(str(p.get("run_id")), str(p.get("run_id")))}
            for p in exp.curves_csv
        ]
    by_attack: dict[str, dict[str, dict[float, list[dict]]]] = {}
    for p in points:
        eps = _f(p.get("eps"))
        if eps is None or _f(p.get("accuracy")) is None:
            continue
        by_attack.setdefault(str(p.get("attack")), {}).setdefault(p["group"], {}).setdefault(
            eps, []
        ).append(p)
    out = []
    for attack, groups in by_attack.items():
        series = []
        for group, at in groups.items():
            xs = sorted(at)
            acc = [sum(_f(p["accuracy"]) for p in at[e]) / len(at[e]) for e in xs]
            lo = [min((_f(p.get("ci_low")) for p in at[e]), key=_key) for e in xs]
            hi = [max((_f(p.get("ci_high")) for p in at[e]), key=_key) for e in xs]
            series.append({"group": group, "eps": xs, "accuracy": acc, "ci_low": lo, "ci_high": hi})
        out.append({"attack": attack, "series": series})
    return out


def _key(v: float | None) -> float:
    return -math.inf if v is None else v


def tuning(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Optuna study: history with best-so-far, importances, the Pareto front."""
    if not summary:
        return None
    directions = list(summary.get("directions") or ["maximize"])
    names = list(summary.get("objectives") or [])
    names = [str(n) for n in names] + [f"objective {i + 1}" for i in range(len(names), 9)]
    trials = sorted(summary.get("trials") or [], key=lambda t: t.get("number", 0))
    best, history = None, []
    sign = 1 if directions[0] == "maximize" else -1
    for t in trials:
        values = t.get("values") or ([t["value"]] if t.get("value") is not None else [])
        v = _f(values[0]) if values else None
        if v is not None and str(t.get("state", "")).upper() == "COMPLETE":
            best = v if best is None or sign * v > sign * best else best
        history.append({**t, "values": values, "value": v, "best_so_far": best})
    imp = summary.get("param_importances") or {}
    if imp and all(isinstance(v, dict) for v in imp.values()):  # multi-objective: per objective
        imp = next(iter(imp.values()))
    imp_error = imp.get("error") if isinstance(imp, dict) else None
    if isinstance(imp, dict):
        imp = sorted(
            ((k, v) for k, v in imp.items() if k != "error"), key=lambda kv: -(_f(kv[1]) or 0)
        )
    pareto = summary.get("pareto") or summary.get("pareto_front") or []
    front = {p.get("number") for p in pareto if isinstance(p, dict)}
    states: dict[str, int] = {}
    for t in trials:
        states[str(t.get("state", "?"))] = states.get(str(t.get("state", "?")), 0) + 1
    return {
        "study_name": summary.get("study_name"),
        "directions": directions,
        "objectives": names[: len(directions)],
        "trials": history,
        "states": states,
        "best": summary.get("best"),
        "pareto": pareto,
        "pareto_numbers": sorted(n for n in front if n is not None),
        "importances": [[str(k), _f(v)] for k, v in imp],
        "importances_error": imp_error,
        "improvement": summary.get("improvement"),
        "mode": summary.get("mode"),
        "target": summary.get("target"),
        "raw_keys": sorted(summary),
    }


def _at(d: Any, *path: str) -> Any:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def _mean_at(members: list[dict[str, Any]], *path: str) -> float | None:
    """Mean over seeds of one number of the runs' poisoning blocks (None where none has it)."""
    vals = [v for v in (_f(_at(r["poisoning"], *path)) for r in members) if v is not None]
    return sum(vals) / len(vals) if vals else None


def _bounds(members: list[dict[str, Any]], *path: str) -> tuple[float | None, float | None]:
    """The widest 95% interval over seeds of one share (``path`` ends at an interval)."""
    lows = [v for v in (_f(_at(r["poisoning"], *path, "ci_low")) for r in members) if v is not None]
    highs = [
        v for v in (_f(_at(r["poisoning"], *path, "ci_high")) for r in members) if v is not None
    ]
    return min(lows, default=None), max(highs, default=None)


def _filter_row(members: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The defense's filter over seeds: mean precision/recall/F1 (widest intervals), summed
    confusion counts and removals per class."""
    filters = [r["poisoning"].get("filter") for r in members if r["poisoning"].get("filter")]
    if not filters:
        return None
    counts = {k: sum(int(f.get(k) or 0) for f in filters) for k in ("tp", "fp", "tn", "fn")}
    per_class: dict[int, dict[str, int]] = {}
    for f in filters:
        for c in f.get("per_class") or []:
            row = per_class.setdefault(int(c["label"]), dict.fromkeys(
                ("examples", "poisons", "removed", "removed_poisons"), 0))  # fmt: skip
            for k in row:
                row[k] += int(c.get(k) or 0)
    return {
        **counts,
        "removed": sum(int(f.get("removed") or 0) for f in filters),
        "examples": sum(int(f.get("examples") or 0) for f in filters),
        "precision": _mean_at(members, "filter", "precision", "value"),
        "precision_ci": _bounds(members, "filter", "precision"),
        "recall": _mean_at(members, "filter", "recall", "value"),
        "recall_ci": _bounds(members, "filter", "recall"),
        "f1": _mean_at(members, "filter", "f1"),
        "per_class": [{"label": k, **v} for k, v in sorted(per_class.items())],
        "seeds": len(filters),
    }


def _effect(members: list[dict[str, Any]], which: str) -> dict[str, Any] | None:
    """Clean, source-class accuracy and ASR of the runs' models ``before`` or ``after`` the
    defense: means over seeds with the widest 95% interval."""
    if not any(_at(r["poisoning"], which) for r in members):
        return None
    out = {}
    for key in ("clean", "source", "asr"):
        out[key] = _mean_at(members, which, key, "value")
        out[key + "_ci"] = _bounds(members, which, key)
    return out


def poisoning(runs: list[dict[str, Any]], groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per model x recipe (x defense): the backdoor's success rate, clean and source-class
    accuracy before and after the defense, and the defense's filter."""
    with_p = [r for r in runs if r["poisoning"]]
    if not with_p:
        return None
    rows = []
    for g in groups:
        members = [r for r in with_p if r["group"] == g["group"]]
        if not members:
            continue
        asr = [_f(r["poisoning"].get("asr")) for r in members]
        asr = [a for a in asr if a is not None]
        mean = sum(asr) / len(asr) if asr else None
        std = statistics.stdev(asr) if len(asr) > 1 else None  # over seeds, as seed_summary
        lows = [_f(r["poisoning"].get("ci_low")) for r in members]
        highs = [_f(r["poisoning"].get("ci_high")) for r in members]
        clean = g["cells"].get(CLEAN)
        defense = members[0]["poisoning"].get("defense") or "none"
        rows.append(
            {
                "group": g["group"],
                "kind": g["kind"],
                "mitigation": g["kind"] == "backdoor_mitigation",
                "defense": defense,
                "asr": mean,
                "asr_std": std,
                "ci_low": min((v for v in lows if v is not None), default=None),
                "ci_high": max((v for v in highs if v is not None), default=None),
                "n": members[0]["poisoning"].get("n"),
                "clean": clean["mean"] if clean else None,
                "after": _effect(members, "after"),
                "before": _effect(members, "before"),
                "filter": _filter_row(members),
                "seeds": len(asr),
            }
        )
    p = with_p[0]["poisoning"]
    keys = ("scenario", "source", "target", "trigger", "fraction", "poisons")
    setup = {k: p[k] for k in keys if p.get(k) is not None}  # an older run's block has fewer
    return {"setup": setup, "rows": rows, "filters": any(r["filter"] for r in rows)}


def checklist(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Check x run matrix of pass/warn/fail with each check's detail and evidence."""
    with_c = [r for r in runs if r["checklist"]]
    if not with_c:
        return None
    names = list(dict.fromkeys(str(c.get("check")) for r in with_c for c in r["checklist"]))
    counts = {"pass": 0, "warn": 0, "fail": 0}
    per_run = []
    for r in with_c:
        by = {str(c.get("check")): c for c in r["checklist"]}
        for c in r["checklist"]:
            counts[str(c.get("status"))] = counts.get(str(c.get("status")), 0) + 1
        per_run.append({"id": r["id"], "group": r["group"], "seed": r["seed"], "checks": by})
    return {"checks": names, "runs": per_run, "counts": counts}


def escalations(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run whose suite escalated: what, why, its cost and what it broke, and in words."""
    return [
        {"id": r["id"], "group": r["group"], "text": r["escalation_text"], **r["escalation"]}
        for r in runs
        if r.get("escalation")
    ]


def provenance(exp: Experiment, runs: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in runs if r["results"]]
    plan = exp.plan or {}
    overrides = list(plan.get("overrides", []))
    recorded = plan.get("spec_sha256")
    computed = spec_sha256(exp.spec_text, overrides) if exp.spec_text is not None else None
    versions = list({json.dumps(r["versions"], sort_keys=True) for r in done if r["versions"]})
    started = [r["started"] for r in runs if r["started"]]
    finished = [r["finished"] for r in runs if r["finished"]]
    return {
        "spec_text": exp.spec_text,
        "spec_sha256": recorded,
        "spec_sha256_verified": None if not recorded or not computed else recorded == computed,
        "overrides": overrides,
        "data_sha256": sorted({r["data_sha256"] for r in done if r["data_sha256"]}),
        "seeds": sorted({r["seed"] for r in runs if r["seed"] is not None}, key=str),
        "devices": sorted({str(r["device"]) for r in runs if r["device"]}),
        "versions": [json.loads(v) for v in sorted(versions)],
        "git_commits": sorted({r["git_commit"] for r in done if r["git_commit"]}),
        "started": min(started) if started else None,
        "finished": max(finished) if finished else None,
        "exports": [{"run": r["id"], **e} for r in runs for e in r["exports"]],
        "omitted_dirs": exp.omitted,
    }


def paired_test(runs: list[dict[str, Any]], exp: Experiment, a: str, b: str) -> dict | None:
    """McNemar on per-example worst-case correctness of groups a and b, on a seed both ran."""
    from runner.stats import mcnemar

    ra = {r["seed"]: r for r in runs if r["group"] == a and r["results"]}
    rb = {r["seed"]: r for r in runs if r["group"] == b and r["results"]}
    common = sorted(set(ra) & set(rb), key=str)
    if not common:
        return None
    seed = common[0]
    try:
        ca, cb = _worst_correct(ra[seed], exp), _worst_correct(rb[seed], exp)
    except Exception as e:  # examples.parquet is optional: say why the test is missing
        return {"seed": seed, "error": f"{type(e).__name__}: {e}"}
    if ca is None or cb is None or len(ca) != len(cb):
        return {"seed": seed, "error": "per-example outcomes missing or not on the same examples"}
    res = mcnemar(ca, cb)
    return {"seed": seed, "n": int(len(ca)), "a": a, "b": b, **res}


def _worst_correct(run: dict[str, Any], exp: Experiment):
    import pandas as pd

    path = exp.root / "runs" / run["dir"] / "examples.parquet"
    if not path.exists():
        return None
    ex = pd.read_parquet(path, columns=["example", "attack", "correct"])
    table = ex.pivot_table(index="example", columns="attack", values="correct", aggfunc="min")
    if WORST in table.columns:
        return table[WORST].astype(bool).to_numpy()
    res = run["results"]
    worst = res.get(WORST)
    cols = [CLEAN] + [
        a
        for a, v in res.items()
        if a not in (CLEAN, WORST)
        and worst is not None
        and v["eps"] is not None
        and v["eps"] <= (worst["eps"] or 0) + 1e-12
        and v["norm"] == worst["norm"]
    ]
    cols = [c for c in cols if c in table.columns]
    return table[cols].astype(bool).all(axis=1).to_numpy()
