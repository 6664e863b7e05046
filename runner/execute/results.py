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
    """The columns of one results row (``scope`` and ``broken`` empty where it has none)."""
    return {"attack": r.attack, "attack_kind": r.kind, "norm": r.norm, "eps": r.eps,
            "accuracy": r.accuracy, "n": r.n, "ci_low": r.ci_low, "ci_high": r.ci_high,
            "scope": r.scope, "broken": r.broken}  # fmt: skip


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
        for r in m.results:
            rows.append({**_identity(m), **_result(r), **cost, **hp})
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


def format_table(df: pd.DataFrame) -> str:
    """model x recipe rows, one column per attack: mean +- std over seeds."""
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
