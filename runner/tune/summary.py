"""``<output>/tune/summary.json`` and ``trials.csv``: what a study found, for people and reports."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from runner.fsio import write_json, write_with
from runner.spec.tune import TuneSpec


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def trial_row(tr: FrozenTrial) -> dict[str, Any]:
    ua = tr.user_attrs
    return {
        "number": tr.number,
        "state": "infeasible" if "infeasible" in ua else tr.state.name.lower(),
        "params": tr.params,
        "values": [_num(v) for v in tr.values] if tr.values else None,
        "pruned_at_epoch": ua.get("pruned_at_epoch"),
        "run_id": ua.get("run_id"),
        "duration_s": tr.duration.total_seconds() if tr.duration else None,
        "intermediate": {int(k): _num(v) for k, v in sorted(tr.intermediate_values.items())},
        "retry_of": tr.system_attrs.get("failed_trial"),
        "duplicate_of": ua.get("duplicate_of"),
        "failure": ua.get("failure") or ua.get("infeasible"),
    }


def _importances(study: optuna.Study, t: TuneSpec, n_complete: int) -> Any:
    if n_complete < 2:
        return None
    labels = [g.label for g in t.goals]
    out: dict[str, Any] = {}
    for i, (label, goal) in enumerate(zip(labels, t.goals, strict=True)):
        # Optuna's default evaluator (PED-ANOVA) explains low target values: flip maximised ones
        sign = -1.0 if goal.direction == "maximize" else 1.0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # PED-ANOVA's "low values" notice
                out[label] = optuna.importance.get_param_importances(
                    study, target=lambda tr, i=i, sign=sign: sign * tr.values[i]
                )
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. one value everywhere
            out[label] = {"error": str(e)}
    return out[labels[0]] if len(labels) == 1 else out


def _improvement(complete: list[FrozenTrial], best: FrozenTrial, t: TuneSpec, names) -> dict:
    first = min(complete, key=lambda tr: tr.number)
    goal = t.goals[0]
    sign = 1 if goal.direction == "maximize" else -1
    delta = sign * (best.values[0] - first.values[0])
    out = {"first_trial": first.number, "first": first.values[0], "best": best.values[0]}
    out["improved_by"] = delta
    if delta <= 0:
        vals = [tr.values[0] for tr in complete]
        out["why_not"] = (
            f"the first trial stayed the best of {len(complete)} complete trials "
            f"({names.count('pruned')} pruned, {names.count('infeasible')} infeasible, "
            f"{names.count('fail')} failed); "
            f"{goal.label} ranged {min(vals):.4f}..{max(vals):.4f}: "
            + (
                "the space is flat at this budget"
                if max(vals) - min(vals) < 0.01
                else "the study needs more trials to beat a good first draw"
            )
        )
    return out


def summarize(study: optuna.Study, t: TuneSpec, storage_shown: str) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    complete = [tr for tr in trials if tr.state == TrialState.COMPLETE]
    rows = [trial_row(tr) for tr in trials]
    names = [r["state"] for r in rows]
    out: dict[str, Any] = {
        "study_name": study.study_name,
        "mode": t.mode,
        "storage": storage_shown,
        "directions": [d.name.lower() for d in study.directions],
        "objectives": [g.label for g in t.goals],
        "target": t.target.model_dump(exclude_none=True),
        "trials_requested": t.trials,
        "counts": {n: names.count(n) for n in dict.fromkeys(names)},
        "trials": rows,
    }
    if t.multi:
        out["pareto_front"] = [trial_row(tr) for tr in study.best_trials] if complete else []
    else:
        out["best"] = trial_row(study.best_trial) if complete else None
        if complete:
            out["improvement"] = _improvement(complete, study.best_trial, t, names)
    out["param_importances"] = _importances(study, t, len(complete))
    return out


def write(summary: dict[str, Any], tune_dir: Path) -> None:
    write_json(tune_dir / "summary.json", summary)
    rows = []
    for tr in summary["trials"]:
        row = {k: tr[k] for k in ("number", "state", "run_id", "pruned_at_epoch", "duration_s")}
        row.update({f"param_{k}": v for k, v in tr["params"].items()})
        for label, v in zip(summary["objectives"], tr["values"] or [], strict=False):
            row[label] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    write_with(tune_dir / "trials.csv", lambda p: df.to_csv(p, index=False))
