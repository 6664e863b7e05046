"""Per-run rows and the model x recipe comparison table (mean ± std over seeds, 95% CIs, cost)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from runner.compile import Audit
from runner.execute.results import seed_summary
from runner.report.collect import as_stored, numbers
from runner.store import ResultRow, StoredRun, group_label
from runner.store.files import dump

CLEAN, WORST = "clean", "worst_case"


def _f(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _result(x: ResultRow) -> dict[str, Any]:
    return {
        "accuracy": _f(x.accuracy),
        "ci_low": _f(x.ci_low),
        "ci_high": _f(x.ci_high),
        "n": x.n,
        "kind": x.kind,
        "norm": x.norm,
        "eps": _f(x.eps),
        "scope": x.scope,
        "broken": x.broken,
        "attacked": x.attacked,
    }


def _identity(r: StoredRun) -> dict[str, Any]:
    """Who the run is: from its metrics, else its run.json, else its id."""
    m, run = r.metrics, r.run
    if m is not None:
        return {"slug": m.slug, "model": m.model, "arch": m.arch, "recipe": m.recipe,
                "kind": m.kind, "seed": m.seed, "sweep": m.sweep}  # fmt: skip
    if run is None:
        return {"slug": r.id, "model": None, "arch": None, "recipe": None, "kind": None,
                "seed": None, "sweep": {}}  # fmt: skip
    audit = isinstance(run, Audit)
    return {
        "slug": run.slug,
        "model": run.model.name,
        "arch": run.model.arch,
        "recipe": None if audit else run.recipe.name,
        "kind": None if audit else run.recipe.kind,
        "seed": None if audit else run.seed,
        "sweep": {},
    }


def _training(r: StoredRun) -> dict[str, Any]:
    """Its training record: from its metrics, else its status (a run not evaluated yet)."""
    src = r.metrics if r.metrics is not None else r.status
    return {"best_epoch": src.best_epoch, "stopped_early": src.stopped_early,
            "device": src.device}  # fmt: skip


def _dump(records: list | None) -> list[dict[str, Any]] | None:
    """Store records as plain data, as their file holds them."""
    return None if records is None else [as_stored(dump(x)) for x in records]


def run_row(r: StoredRun) -> dict[str, Any]:
    """One run as plain data: identity, per-attack results, cost, training record, extras."""
    m, run = r.metrics, r.run
    ident = _identity(r)
    group = group_label(ident["model"], ident["recipe"], ident["sweep"], r.id)
    if ident["model"] is None:  # never started: model@recipe[sweep] from the id's slug
        group = r.id.rsplit("-", 1)[0].rsplit("@", 1)[0]
    results = {  # the backdoor's success rate and the filter are shown under poisoning, not as
        # accuracies; randomized smoothing under certified robustness, not as attack columns
        x.attack: _result(x)
        for x in (m.results if m else [])
        if not (x.is_poisoning or x.is_certified)
    }
    normalize = as_stored(run.model.model_dump())["normalize"] if run is not None else None
    return {
        "id": r.id,
        "dir": r.dir.name if r.found else None,
        "slug": ident["slug"],
        "group": group,
        "model": ident["model"],
        "arch": ident["arch"],
        "recipe": ident["recipe"],
        "kind": ident["kind"],
        "seed": ident["seed"],
        "sweep": ident["sweep"],
        "hyperparameters": m.hyperparameters if m else {},
        "data": as_stored(run.data.model_dump()) if run is not None else None,
        "state": r.state,
        "diagnosis": r.status.diagnosis,
        "results": results,
        **_cost(m),
        **_training(r),
        "checkpoint": m.checkpoint if m else None,
        "checkpoint_sha256": m.checkpoint_sha256 if m else None,
        "checkpoint_provenance": (  # the file an audit loaded (advrun eval)
            as_stored(dump(m.checkpoint_provenance)) if m and m.checkpoint_provenance else None
        ),
        "audit": r.is_audit,
        "kwargs": as_stored(run.model.kwargs) if run is not None else None,
        "started": r.status.started,
        "finished": r.status.finished,
        "data_sha256": m.data_sha256 if m else None,
        "class_names": m.class_names if m else None,
        "normalize": normalize,  # inside the model's forward (models[].normalize)
        "versions": m.versions if m else None,
        "git_commit": m.git_commit if m else None,
        "checklist": _dump(m.checklist) if m else None,
        # the larger budgets the evidence asked for (None: no signal), and the same in words
        "escalation": as_stored(dump(m.escalation)) if m and m.escalation else None,
        "escalation_text": m.escalation.words if m and m.escalation else None,
        "poisoning": as_stored(dump(m.poisoning)) if m and m.poisoning else None,
        "curves": _dump(m.curves) if m else None,
        "certified": _dump(m.certified) if m else None,
        "epochs": numbers(r.epochs),
        "exports": _dump(r.exports),
    }


def _cost(m: Any) -> dict[str, Any]:
    """A run's training and evaluation cost: seconds and passes (None before it has metrics)."""
    tp, ep = (m.train_passes, m.eval_passes) if m else (None, None)
    return {
        "train_seconds": _f(m.train_seconds) if m else None,
        "eval_seconds": _f(m.eval_seconds) if m else None,
        "train_forward_passes": tp.forward_passes if tp else None,
        "train_backward_passes": tp.backward_passes if tp else None,
        "eval_forward_passes": ep.forward_passes if ep else None,
        "eval_backward_passes": ep.backward_passes if ep else None,
    }


def attack_columns(
    runs: list[dict[str, Any]], suite: list[str], off_threat: tuple[str, ...] = ()
) -> list[str]:
    """clean, the suite in the order it ran (``suite``: the cascade's order), then what else
    was measured in the order the results list it (an escalation's rungs, which ran after the
    suite), the attacks outside the threat model (``off_threat``), and the worst case: so the
    cumulative columns of a cascade read left to right as it ran."""
    seen = list(dict.fromkeys(a for r in runs for a in r["results"]))
    extra = [a for a in seen if a not in {CLEAN, WORST, *suite}]
    inside = [a for a in suite if a not in off_threat]
    cols = [CLEAN, *inside, *[a for a in extra if a not in off_threat],
            *[a for a in suite if a in off_threat], WORST]  # fmt: skip
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
