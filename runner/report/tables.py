"""Per-run rows and the model x recipe comparison table (mean ± std over seeds, 95% CIs, cost)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from runner.execute.results import seed_summary
from runner.report.collect import RunData
from runner.report.gate import group_label

CLEAN, WORST = "clean", "worst_case"


def _f(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _is_asr(row: dict[str, Any]) -> bool:
    return row.get("attack") == "asr" and row.get("kind") == "backdoor"


def run_row(r: RunData) -> dict[str, Any]:
    """One run as plain data: identity, per-attack results, cost, training record, extras."""
    m = r.metrics or {}
    cfg = r.config
    model = cfg.get("model") or {}
    recipe = cfg.get("recipe") or {}
    names = {
        "model": m.get("model", model.get("name")),
        "recipe": m.get("recipe", recipe.get("name")),
        "sweep": m.get("sweep", {}),
        "run_id": r.id,
    }
    group = group_label(names)
    if names["model"] is None:  # never started: model@recipe[sweep] from the id's slug
        group = r.id.rsplit("-", 1)[0].rsplit("@", 1)[0]
    results = {
        str(x["attack"]): {
            "accuracy": _f(x.get("accuracy")),
            "ci_low": _f(x.get("ci_low")),
            "ci_high": _f(x.get("ci_high")),
            "n": x.get("n"),
            "kind": x.get("kind"),
            "norm": x.get("norm"),
            "eps": _f(x.get("eps")),
            "scope": x.get("scope"),
            "broken": x.get("broken"),
            "attacked": x.get("attacked"),
        }
        for x in m.get("results", [])
        if not _is_asr(x)  # the backdoor's success rate is shown under poisoning, not accuracy
    }
    tp, ep = m.get("train_passes") or {}, m.get("eval_passes") or {}
    return {
        "id": r.id,
        "dir": r.dir.name if r.dir else None,
        "slug": m.get("slug", cfg.get("slug", r.id)),
        "group": group,
        "model": names["model"],
        "arch": m.get("arch", model.get("arch")),
        "recipe": names["recipe"],
        "kind": m.get("kind", recipe.get("kind")),
        "seed": m.get("seed", cfg.get("seed")),
        "sweep": names["sweep"],
        "hyperparameters": m.get("hyperparameters", {}),
        "data": cfg.get("data"),
        "state": r.state,
        "diagnosis": r.status.get("diagnosis"),
        "results": results,
        "train_seconds": _f(m.get("train_seconds")),
        "eval_seconds": _f(m.get("eval_seconds")),
        "train_forward_passes": tp.get("forward_passes"),
        "train_backward_passes": tp.get("backward_passes"),
        "eval_forward_passes": ep.get("forward_passes"),
        "eval_backward_passes": ep.get("backward_passes"),
        "best_epoch": m.get("best_epoch", r.status.get("best_epoch")),
        "stopped_early": m.get("stopped_early", r.status.get("stopped_early")),
        "checkpoint": m.get("checkpoint"),
        "device": m.get("device", r.status.get("device")),
        "started": r.status.get("started"),
        "finished": r.status.get("finished"),
        "data_sha256": m.get("data_sha256"),
        "class_names": m.get("class_names"),
        "normalize": model.get("normalize"),  # inside the model's forward (models[].normalize)
        "versions": m.get("versions"),
        "git_commit": m.get("git_commit"),
        "checklist": m.get("checklist"),
        "poisoning": m.get("poisoning"),
        "curves": m.get("curves"),
        "epochs": r.epochs,
        "exports": r.exports,
    }


def attack_columns(runs: list[dict[str, Any]], suite: list[str]) -> list[str]:
    """clean, the suite in spec order, the worst case, then anything else that was measured."""
    seen = {a for r in runs for a in r["results"]}
    extra = sorted(seen - {CLEAN, WORST, *suite})
    cols = [CLEAN, *suite, *extra, WORST]
    return [c for c in cols if c in seen]


def column_scopes(runs: list[dict[str, Any]]) -> dict[str, str]:
    """How each column was measured: clean, cascade (cumulative), independent, worst_case..."""
    out: dict[str, str] = {}
    for r in runs:
        for a, v in r["results"].items():
            if v.get("scope") and a not in out:
                out[a] = str(v["scope"])
    return out


def headline(columns: list[str]) -> tuple[str | None, str]:
    """The robust-accuracy column that ranks defenses, and how to name it."""
    if WORST in columns:
        return WORST, "worst case over the attack suite"
    attacks = [c for c in columns if c != CLEAN]
    return (attacks[0], attacks[0]) if len(attacks) == 1 else (None, "")


def _cell(sub: pd.DataFrame, row: pd.Series | None) -> dict[str, Any]:
    vals = [_f(v) for v in sub["accuracy"]]
    lows = [v for v in (_f(x) for x in sub["ci_low"]) if v is not None]
    highs = [v for v in (_f(x) for x in sub["ci_high"]) if v is not None]
    seeds = len(vals)
    return {
        "mean": _f(row["mean"]) if row is not None else None,
        "std": _f(row["std"]) if row is not None and seeds > 1 else None,
        "seeds": seeds,
        # one seed: its bootstrap CI; several: the envelope of the per-seed CIs (conservative)
        "ci_low": min(lows) if lows else None,
        "ci_high": max(highs) if highs else None,
        "ci_kind": "bootstrap" if seeds == 1 else "envelope",
        "values": vals,
        "n": sorted({int(n) for n in sub["n"] if _f(n) is not None}),
    }


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in (_f(x) for x in values) if v is not None]
    return sum(vals) / len(vals) if vals else None


def groups(runs: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """model x recipe (x sweep) rows of the comparison table, in plan order."""
    done = [r for r in runs if r["results"]]
    rows = [
        {
            "group": r["group"],
            "model": r["model"],
            "recipe": r["group"],  # seed_summary groups by model x recipe: keep sweeps apart
            "seed": r["seed"],
            "attack": a,
            **v,
        }
        for r in done
        for a, v in r["results"].items()
    ]
    df = pd.DataFrame(rows)
    summary = seed_summary(df) if not df.empty else df
    out = []
    for label in dict.fromkeys(r["group"] for r in runs):
        members = [r for r in runs if r["group"] == label]
        first = members[0]
        cells = {}
        for a in columns:
            sub = df[(df["group"] == label) & (df["attack"] == a)] if not df.empty else df
            if sub.empty:
                cells[a] = None
                continue
            s = summary[(summary["recipe"] == label) & (summary["attack"] == a)]
            cells[a] = _cell(sub, s.iloc[0] if len(s) else None)
        fin = [r for r in members if r["results"]]
        out.append(
            {
                "group": label,
                "model": first["model"],
                "arch": first["arch"],
                "recipe": first["recipe"],
                "kind": first["kind"],
                "sweep": first["sweep"],
                "runs": [r["id"] for r in members],
                "seeds": [r["seed"] for r in fin],
                "missing": [f"{r['id']} ({r['state']})" for r in members if not r["results"]],
                "cells": cells,
                "train_seconds": _mean([r["train_seconds"] for r in fin]),
                "eval_seconds": _mean([r["eval_seconds"] for r in fin]),
                "train_forward_passes": _mean([r["train_forward_passes"] for r in fin]),
                "train_backward_passes": _mean([r["train_backward_passes"] for r in fin]),
                "eval_forward_passes": _mean([r["eval_forward_passes"] for r in fin]),
                "eval_backward_passes": _mean([r["eval_backward_passes"] for r in fin]),
            }
        )
    return out


def mean_of(group: dict[str, Any], column: str | None) -> float | None:
    cell = group["cells"].get(column) if column else None
    return cell["mean"] if cell else None
