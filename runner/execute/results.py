"""Experiment-level results: one tidy row per (run, attack), as CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from runner.compile import Plan
from runner.fsio import write_with
from runner.store import RunMetrics, Store

COLUMNS = [
    "run_id",
    "model",
    "arch",
    "recipe",
    "kind",
    "seed",
    "attack",
    "attack_kind",
    "norm",
    "eps",
    "accuracy",
    "n",
    "ci_low",
    "ci_high",
]


def _identity(m: RunMetrics) -> dict:
    return {"run_id": m.run_id, "model": m.model, "arch": m.arch, "recipe": m.recipe,
            "kind": m.kind, "seed": m.seed}  # fmt: skip


def _result(r) -> dict:
    """The columns of one results row (``scope`` and ``broken`` empty where it has none; the
    randomized-smoothing columns only on its rows, so tables without them keep their columns)."""
    row = {"attack": r.attack, "attack_kind": r.kind, "norm": r.norm, "eps": r.eps,
           "accuracy": r.accuracy, "n": r.n, "ci_low": r.ci_low, "ci_high": r.ci_high,
           "scope": r.scope, "broken": r.broken}  # fmt: skip
    if r.is_certified:
        row |= {"sigma": r.sigma, "radius": r.radius, "linf_radius": r.linf_radius,
                "abstained": r.abstained}  # fmt: skip
    return row


def collect(plan: Plan, store: Store) -> pd.DataFrame:
    """One tidy row per (run, attack) of every evaluated run and audit."""
    rows = []
    for m in store.evaluated(plan):
        cost = {
            "train_seconds": m.train_seconds,
            "eval_seconds": m.eval_seconds,
            "train_forward_passes": m.train_passes.forward_passes,
            "train_backward_passes": m.train_passes.backward_passes,
        }
        hp = {
            f"hp_{k}": v
            for k, v in m.hyperparameters.items()
            if isinstance(v, (int, float, str, bool))
        }
        # a poisoned run's defense (a column only in experiments with a poisoning block)
        defense = {"defense": m.poisoning.defense} if m.poisoning and m.poisoning.defense else {}
        for r in m.results:
            rows.append({**_identity(m), **_result(r), **defense, **cost, **hp})
    return pd.DataFrame(rows, columns=None if rows else COLUMNS)


CURVE_COLUMNS = ["run_id", "model", "recipe", "seed", "attack", "eps", "accuracy", "n",
                 "ci_low", "ci_high"]  # fmt: skip


def collect_curves(plan: Plan, store: Store) -> pd.DataFrame:
    """Tidy robustness curves: one row per (run, attack, eps), trained runs and audits."""
    rows = [
        {"run_id": m.run_id, "model": m.model, "recipe": m.recipe, "seed": m.seed} | c.model_dump()
        for m in store.evaluated(plan)
        for c in m.curves
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def write_curves(plan: Plan, store: Store) -> pd.DataFrame:
    """curves.csv and curves.parquet beside results.csv (empty files when no curve was asked)."""
    df = collect_curves(plan, store)
    write_with(store.root / "curves.csv", lambda p: df.to_csv(p, index=False))
    write_with(store.root / "curves.parquet", lambda p: df.to_parquet(p, index=False))
    return df


CERTIFIED_COLUMNS = ["run_id", "model", "arch", "recipe", "kind", "seed", "sigma", "radius",
                     "linf_radius", "certified_accuracy", "ci_low", "ci_high", "certified", "n",
                     "abstained", "abstain_rate", "acr", "smoothed_accuracy", "n0", "samples",
                     "predict_n", "alpha", "dim", "interval"]  # fmt: skip


def collect_certified(plan: Plan, store: Store) -> pd.DataFrame:
    """Tidy certified accuracy: one row per (run, noise level, radius) of every certified run."""
    rows = []
    for m in store.evaluated(plan):
        for s in m.certified:
            per_sigma = {"sigma": s.sigma, "n": s.n_examples, "abstained": s.abstained,
                         "abstain_rate": s.abstain_rate, "acr": s.acr,
                         "smoothed_accuracy": s.smoothed_accuracy, "n0": s.n0, "samples": s.n,
                         "predict_n": s.predict_n, "alpha": s.alpha, "dim": s.dim,
                         "interval": s.interval}  # fmt: skip
            for p in s.curve:
                rows.append({**_identity(m), **per_sigma, "radius": p.radius,
                             "linf_radius": p.linf_radius, "certified_accuracy": p.accuracy,
                             "ci_low": p.ci_low, "ci_high": p.ci_high,
                             "certified": p.certified})  # fmt: skip
    return pd.DataFrame(rows, columns=CERTIFIED_COLUMNS)


def write_certified(plan: Plan, store: Store) -> pd.DataFrame:
    """certified.csv beside results.csv when some run was certified (else none: a stale one of
    an earlier spec is removed)."""
    df = collect_certified(plan, store)
    path = store.root / "certified.csv"
    if df.empty:
        path.unlink(missing_ok=True)
    else:
        write_with(path, lambda p: df.to_csv(p, index=False))
    return df


def write(df: pd.DataFrame, root: Path, between=None) -> None:
    write_with(root / "results.csv", lambda p: df.to_csv(p, index=False))
    if between is not None:  # a test's kill point between the two files
        between()
    write_with(root / "results.parquet", lambda p: df.to_parquet(p, index=False))


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of accuracy over seeds, per model x recipe x attack."""
    if df.empty:
        return df
    keys = ["model", "recipe", "attack"]
    g = df.groupby(keys, sort=False)["accuracy"]
    out = g.agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "seeds"})
    return out


_NOT_PRINTED = ("clean_before", "source_accuracy_before", "asr_before", "filter_f1",
                "filter_removed")  # fmt: skip
CERTIFIED_SCOPES = ("certified", "smoothed")


def format_table(df: pd.DataFrame) -> str:
    """model x recipe rows, one column per attack: mean +- std over seeds (a poisoned run's
    defense beside its recipe; of the poisoning rows, the ASR, the source-class accuracy and the
    filter's precision and recall); then, when some run was certified, its certified accuracy
    per noise level and radius (its own lines)."""
    if "defense" in df.columns:
        df = df[~df["attack"].isin(_NOT_PRINTED)].copy()
        df["recipe"] = [
            r if not isinstance(d, str) else f"{r}[defense={d}]"
            for r, d in zip(df["recipe"], df["defense"], strict=True)
        ]
    if "scope" in df.columns and df["scope"].isin(CERTIFIED_SCOPES).any():
        certified = df[df["scope"].isin(CERTIFIED_SCOPES)]
        rest = df[~df["scope"].isin(CERTIFIED_SCOPES)]
        return _format_suite(rest) + "\n" + _format_certified(certified)
    return _format_suite(df)


def _format_certified(df: pd.DataFrame) -> str:
    """One line per model x recipe x sigma: smoothed accuracy, then certified accuracy at each
    L2 radius (means over seeds)."""
    lines = ["randomized smoothing (L2): smoothed clean accuracy (PREDICT), certified accuracy"]
    for (model, recipe, sigma), g in df.groupby(["model", "recipe", "sigma"], sort=False):
        parts = []
        smoothed = g[g["scope"] == "smoothed"]["accuracy"]
        if len(smoothed):
            parts.append(f"smoothed {smoothed.mean():.3f}")
        cert = g[g["scope"] == "certified"].groupby("radius", sort=True)["accuracy"].mean()
        parts += [f"r={r:g}: {a:.3f}" for r, a in cert.items()]
        lines.append(f"  {model} {recipe} sigma={sigma:g}: " + ", ".join(parts))
    return "\n".join(lines)


def _format_suite(df: pd.DataFrame) -> str:
    s = seed_summary(df)
    if s.empty:
        return "(no results)"
    s["cell"] = [
        f"{m:.3f}" + (f" ± {sd:.3f}" if c > 1 else "")
        for m, sd, c in zip(s["mean"], s["std"], s["seeds"], strict=True)
    ]
    attacks = list(dict.fromkeys(s["attack"]))
    t = s.pivot(index=["model", "recipe"], columns="attack", values="cell")[attacks].reset_index()
    seeds = s.groupby(["model", "recipe"], sort=False)["seeds"].max().reset_index()
    t = t.merge(seeds, on=["model", "recipe"])
    plan_order = list(dict.fromkeys(zip(df["model"], df["recipe"], strict=True)))
    t = t.set_index(["model", "recipe"]).loc[plan_order].reset_index()
    text = t.to_string(index=False)
    if "scope" in df.columns and (df["scope"] == "cascade").any():
        text += (
            "\nattack columns: accuracy after the cascade up to that attack (cheapest first); "
            "worst_case: robust accuracy under the whole suite"
        )
    return text
