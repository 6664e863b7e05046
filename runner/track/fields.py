"""What of the run store becomes which MLflow param, tag and metric (pure: no mlflow; reads only
the typed records of :mod:`runner.store` and the output directory's plan.json).

Metric rows are ``(key, value, step)``; keys and values are made valid by :mod:`.names`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.compile import Audit, Run
from runner.fsio import read_json
from runner.store import RunMetrics, RunStatus
from runner.track import names

# epochs.csv column -> metric logged with step=epoch; "epoch" itself marks which epochs are logged
EPOCH_METRICS = {
    "epoch": "epoch",
    "loss": "loss",
    "lr": "lr",
    "eps": "eps",
    "val_clean": "val_clean",
    "val_robust": "val_robust",
    "val_fgsm": "val_fgsm",  # single-step recipes' guard only
    "seconds": "epoch_seconds",
}
Row = tuple[str, float, int]


def checklist_verdict(metrics: RunMetrics | None) -> str:
    return metrics.checklist_verdict if metrics is not None else "not run"


def run_params(run: Run | Audit, metrics: RunMetrics | None, out: Path) -> dict:
    """The resolved run (model, recipe, threat, data, seed), data and spec hashes."""
    p: dict[str, Any] = {"run_id": run.id}
    if isinstance(run, Run):
        p["seed"] = run.seed
    p.update(names.flatten("model", run.model.model_dump()))
    if isinstance(run, Run):
        p.update(names.flatten("recipe", run.recipe.model_dump()))
    else:
        p["checkpoint"] = run.checkpoint
        p["checkpoint_sha256"] = run.checkpoint_sha256
    p.update(names.flatten("threat", run.threat.to_json()))
    p.update(names.flatten("data", run.data.model_dump()))
    if isinstance(run, Run) and run.poisoning is not None:
        p.update(names.flatten("poisoning", run.poisoning.model_dump()))
    if metrics is not None and metrics.data_sha256:
        p["data_sha256"] = metrics.data_sha256
    plan = read_json(out / "plan.json") or {}
    if plan.get("spec_sha256"):
        p["spec_sha256"] = plan["spec_sha256"]
    return {names.key(k): v for k, v in p.items()}


def run_tags(
    run: Run | Audit, metrics: RunMetrics | None, status: RunStatus, out: Path
) -> dict[str, Any]:
    from runner.provenance import versions

    m = metrics
    t = {
        "advrun.version": (m.versions.get("advrun") if m else None) or versions().get("advrun"),
        "advrun.experiment": run.experiment,
        "advrun.state": status.state,
        "advrun.device": (m.device if m else None) or status.device,
        "advrun.checklist": checklist_verdict(metrics),
        "advrun.attacks": [a.name for a in run.attacks],
        "advrun.output": str(out.resolve()),
    }
    if m is not None and m.git_commit:
        t["advrun.git_commit"] = t["mlflow.source.git.commit"] = m.git_commit
    if status.diagnosis:
        t["advrun.diagnosis"] = status.diagnosis
    if status.stopped_early:
        t["advrun.stopped_early"] = status.stopped_early
    return {k: v for k, v in t.items() if v is not None}


def epoch_rows(epochs: list[dict[str, str]], logged: set[int]) -> list[Row]:
    """The per-epoch metrics (step = epoch) of the epochs not yet logged."""
    rows = []
    for row in epochs:
        step = names.number(row.get("epoch"))
        if step is None or int(step) in logged:
            continue
        for col, key in EPOCH_METRICS.items():
            v = names.number(row.get(col))
            if v is not None:
                rows.append((key, v, int(step)))
    return rows


def final_metrics(metrics: RunMetrics) -> list[Row]:
    """Clean, every attack and the worst case with their intervals; cost; best epoch."""
    taken = set(EPOCH_METRICS.values())
    rows: list[Row] = []
    for r in metrics.results:
        k = names.key(r.attack)
        if r.is_certified:  # certified.sigma_0.25.r_0.5, smoothed.sigma_0.25: valid MLflow keys
            where = f"sigma_{r.sigma:g}" + (f".r_{r.radius:g}" if r.radius is not None else "")
            k = names.key(f"{r.scope}.{where}")
        elif k in taken or k.startswith("cost."):
            k = names.key(f"attack.{r.attack}")
        for suffix, v0 in (("", r.accuracy), (".ci_low", r.ci_low), (".ci_high", r.ci_high)):
            v = names.number(v0)
            if v is not None:
                rows.append((names.key(k + suffix), v, 0))
    cost: dict[str, Any] = {
        "cost.train_seconds": metrics.train_seconds,
        "cost.eval_seconds": metrics.eval_seconds,
    }
    for phase, passes in (("train", metrics.train_passes), ("eval", metrics.eval_passes)):
        for k, v in passes.model_dump().items():
            cost[f"cost.{phase}_{k}"] = v
    cost["best_epoch"] = metrics.best_epoch
    rows += [(k, v, 0) for k, v0 in cost.items() if (v := names.number(v0)) is not None]
    for c in metrics.certified:  # the average certified radius per noise level
        rows.append((names.key(f"certified.sigma_{c.sigma:g}.acr"), float(c.acr), 0))
    return rows


def trial_params(trial: dict[str, Any]) -> dict[str, Any]:
    return {names.key(f"trial.{k}"): v for k, v in (trial.get("params") or {}).items()}


def trial_metrics(trial: dict[str, Any]) -> list[Row]:
    values = trial.get("values") or []
    labels = trial.get("objectives") or [f"objective_{i}" for i in range(len(values))]
    return [
        (names.key(f"objective.{lab}"), v, 0)
        for lab, v0 in zip(labels, values, strict=False)
        if (v := names.number(v0)) is not None
    ]


def trial_tags(trial: dict[str, Any]) -> dict[str, Any]:
    tags = {"optuna.trial_number": trial.get("number"), "optuna.state": trial.get("state")}
    if trial.get("pruned_at_epoch") is not None:
        tags["optuna.pruned_at_epoch"] = trial["pruned_at_epoch"]
    return tags


def study_params(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "study_name": summary.get("study_name"),
        "tune.mode": summary.get("mode"),
        "tune.directions": summary.get("directions"),
        "tune.objectives": [str(x) for x in summary.get("objectives") or []],
        "tune.target": summary.get("target"),
        "tune.trials_requested": summary.get("trials_requested"),
    }


def study_objective_keys(summary: dict[str, Any]) -> list[str]:
    return [names.key(f"objective.{x}") for x in summary.get("objectives") or []]


def study_metrics(summary: dict[str, Any], logged: set[int]) -> list[Row]:
    """Each trial's objective values (step = trial number) not yet logged, and the best ones."""
    labels = [str(x) for x in summary.get("objectives") or []]
    keys = study_objective_keys(summary)
    rows = []
    for row in summary.get("trials") or []:
        if row.get("number") is None or int(row["number"]) in logged:
            continue
        for k, v0 in zip(keys, row.get("values") or [], strict=False):
            if (v := names.number(v0)) is not None:
                rows.append((k, v, int(row["number"])))
    best = summary.get("best") or {}
    for lab, v0 in zip(labels, best.get("values") or [], strict=False):
        if (v := names.number(v0)) is not None:
            rows.append((names.key(f"best.{lab}"), v, 0))
    return rows


def study_tags(summary: dict[str, Any]) -> dict[str, Any]:
    tags: dict[str, Any] = {
        f"optuna.count.{k}": v for k, v in (summary.get("counts") or {}).items()
    }
    best = summary.get("best") or {}
    if best.get("number") is not None:
        tags["optuna.best_trial"] = best["number"]
    return tags
