"""The objective of a training study: each trial is a normal run in the run store.

The trial's run is compiled from the sampled parameters (same parameters, same run id), trained by
:func:`runner.execute.run.execute_run` with a per-epoch callback that reports the validation robust
accuracy to Optuna and raises ``TrialPruned`` when the pruner says so, then evaluated on the fixed
threat model; the objective is read from the run's metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from runner.errors import AdvrunError, RunFailed
from runner.execute import Options, execute_run
from runner.execute.claim import Claim, wait_for
from runner.spec import LoadedSpec
from runner.spec.tune import CERTIFIED_METRICS, ObjectiveSpec
from runner.store import RunMetrics, Store
from runner.tune.build import Infeasible, trial_run
from runner.tune.storage import Gate, worker_tag
from runner.tune.study import suggest


@dataclass
class TuneContext:
    """Everything a worker needs (picklable pieces only)."""

    loaded: LoadedSpec
    store: Store
    study_name: str
    opts: Options

    @property
    def tune_dir(self) -> Path:
        return self.store.root / "tune"


@contextlib.contextmanager
def run_lock(ctx: TuneContext, run_id: str) -> Iterator[Claim]:
    """One process at a time trains a run (duplicate parameters, retried trials, a concurrent
    ``advrun run``): the run's claim, waited for, taken over when its holder died."""
    claim = Claim(ctx.store.run_dir(run_id), run_id)
    wait_for(claim)
    try:
        yield claim
    finally:
        claim.release()


def metric_value(metrics: RunMetrics, goal: ObjectiveSpec) -> float:
    """clean_accuracy, or robust_accuracy under the named attack (default: the suite's worst case),
    or randomized smoothing's certified accuracy at a radius or smoothed accuracy."""
    if goal.metric in CERTIFIED_METRICS:
        return certified_value(metrics, goal)
    rows = {r.attack: r.accuracy for r in metrics.results}
    key = "clean" if goal.metric == "clean_accuracy" else (goal.attack or "worst_case")
    if key not in rows:
        raise AdvrunError(
            f"run {metrics.run_id} has no '{key}' result (it has {', '.join(rows)}); "
            "name an attack of the suite in the objective"
        )
    return float(rows[key])


def certified_value(metrics: RunMetrics, goal: ObjectiveSpec) -> float:
    """certified_accuracy at ``goal.radius`` or smoothed_accuracy, at ``goal.sigma`` (``train``:
    the run's training sigma; none: the one noise level certified)."""
    sigma = goal.sigma
    if sigma == "train":
        sigma = metrics.hyperparameters.get("sigma")
    found = [s for s in metrics.certified if sigma is None or abs(s.sigma - float(sigma)) < 1e-12]
    if not found:
        raise AdvrunError(
            f"run {metrics.run_id} was not certified at sigma {sigma} (certified: "
            f"{', '.join(f'{s.sigma:g}' for s in metrics.certified) or 'none'})"
        )
    s = found[0]
    if goal.metric == "smoothed_accuracy":
        return float(s.smoothed_accuracy if s.smoothed_accuracy is not None else float("nan"))
    point = s.at(float(goal.radius or 0.0))
    if point is None:
        raise AdvrunError(f"run {metrics.run_id} has no certified accuracy at radius {goal.radius}")
    return float(point.accuracy)


def counts(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards ``tune.trials`` (infeasible ones are pruned but not counted)."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE):
        return True
    return trial.state == TrialState.PRUNED and "infeasible" not in trial.user_attrs


def _duplicate(trial: optuna.Trial, run_id: str) -> optuna.trial.FrozenTrial | None:
    for other in trial.study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
    ):
        if other.user_attrs.get("run_id") == run_id and other.number != trial.number:
            if "infeasible" in other.user_attrs:
                continue
            return other
    return None


class TrainObjective:
    def __init__(self, ctx: TuneContext, gate: Gate) -> None:
        self.ctx = ctx
        self.gate = gate
        self.spec = ctx.loaded.spec
        self.tune = self.spec.tune
        assert self.tune is not None
        self.current: int | None = None  # the trial this worker runs (for Ctrl-C retries)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        self.gate.release()  # the trial exists now: other workers may count and ask
        self.current = trial.number
        trial.set_user_attr("worker", worker_tag())
        params = suggest(trial, self.tune.space)
        try:
            run = trial_run(self.spec, self.ctx.loaded.data, params)
        except Infeasible as e:  # pruned, so that the sampler learns to avoid the region
            trial.set_user_attr("infeasible", str(e))
            raise optuna.TrialPruned(f"infeasible: {e}") from None
        trial.set_user_attr("run_id", run.id)
        dup = _duplicate(trial, run.id)
        if dup is not None:  # same parameters as a finished trial: answer from the store
            trial.set_user_attr("duplicate_of", dup.number)
            if dup.state == TrialState.PRUNED:
                trial.set_user_attr("pruned_at_epoch", dup.user_attrs.get("pruned_at_epoch"))
                raise optuna.TrialPruned(f"same run as pruned trial {dup.number}")
            return dup.values[0] if len(dup.values) == 1 else list(dup.values)
        prune = self.tune.pruner_name != "none"

        def on_epoch(row: dict[str, Any]) -> None:
            if self.tune.multi:  # Optuna keeps no intermediate values for several objectives
                return
            epoch = int(row["epoch"])
            trial.report(float(row["val_robust"]), epoch)  # kept for curves even unpruned
            if prune and trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", epoch)
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        store = self.ctx.store
        with run_lock(self.ctx, run.id) as claim:
            try:
                metrics = execute_run(run, store, self.ctx.opts, on_epoch=on_epoch, claim=claim)
            except optuna.TrialPruned:
                epoch = trial.user_attrs.get("pruned_at_epoch")
                store.set_status(run, "pruned", pruned_at_epoch=epoch, trial=trial.number)
                raise
            except RunFailed as e:
                trial.set_user_attr("failure", str(e))
                raise
        values = [metric_value(metrics, g) for g in self.tune.goals]
        trial.set_user_attr("train_seconds", metrics.train_seconds)
        return values[0] if len(values) == 1 else values
