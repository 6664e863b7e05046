"""The worker loop, and N local worker processes on one study.

Each iteration holds the gate while it (1) fails and requeues trials of dead workers, (2) counts
the trials that are finished, running or queued, and (3) asks Optuna for one more trial only if
the study still needs it; the objective releases the gate as soon as its trial exists. So the
study ends with exactly ``tune.trials`` finished trials however many workers share it, and a
trial whose worker died is run again with the same parameters (the same run id: its run resumes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from runner.errors import AdvrunError, RunFailed
from runner.tune.build import Infeasible
from runner.tune.objective import TrainObjective, TuneContext, counts
from runner.tune.storage import Gate, StorageInfo, reap_dead_workers, retry_interrupted
from runner.tune.study import make_sampler, open_study, trial_seed

POLL_S = 2.0  # how often a worker with nothing to do looks for dead workers' trials


def target_epochs(ctx: TuneContext) -> int | None:
    t = ctx.loaded.spec.tune
    if t is None or "epochs" in t.space:
        return None
    recipe = next(r for r in ctx.loaded.spec.recipes if r.name == t.target.recipe)
    return int(recipe.epochs) if isinstance(recipe.epochs, int) else None


def describe(trial: FrozenTrial, labels: list[str]) -> str:
    """One line per finished trial."""
    head = f"[trial {trial.number}]"
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
    )
    if trial.state == TrialState.COMPLETE:
        vals = ", ".join(f"{lab} {v:.4f}" for lab, v in zip(labels, trial.values, strict=True))
        dup = trial.user_attrs.get("duplicate_of")
        return f"{head} {vals}  ({params}){f' same run as trial {dup}' if dup is not None else ''}"
    if "infeasible" in trial.user_attrs:
        return f"{head} infeasible, not counted: {trial.user_attrs['infeasible']}  ({params})"
    if trial.state == TrialState.PRUNED:
        return f"{head} pruned at epoch {trial.user_attrs.get('pruned_at_epoch')}  ({params})"
    return f"{head} {trial.state.name.lower()}: {trial.user_attrs.get('failure', '')}  ({params})"


def work(ctx: TuneContext, info: StorageInfo, tag: str = "") -> None:
    """Run trials until the study holds ``tune.trials`` finished ones."""
    t = ctx.loaded.spec.tune
    assert t is not None
    storage = info.open()
    study = open_study(t, ctx.study_name, storage, target_epochs(ctx))
    gate = Gate(info, ctx.study_name)
    objective = _objective(ctx, gate)
    labels = [g.label for g in t.goals]

    def guarded(trial: optuna.Trial) -> Any:
        if trial.user_attrs.get("failure"):  # a retry inherits its original's attributes
            trial.set_user_attr("failure", None)
        try:
            return objective(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("failure", "interrupted; queued again")
            raise

    fail_cap = max(20, 5 * t.trials)

    def report(_study: optuna.Study, trial: FrozenTrial) -> None:
        if ctx.opts.verbose:
            print(f"{tag}{describe(trial, labels)}", flush=True)

    while True:
        gate.acquire()
        try:
            trials = _trials(study, storage, info)
            _refuse_failing(trials, fail_cap, ctx.study_name)
            states = [tr.state for tr in trials]
            live = sum(1 for tr in trials if counts(tr))
            if TrialState.WAITING not in states and live >= t.trials:
                if TrialState.RUNNING in states:  # another worker's: wait, it may die
                    gate.release()
                    time.sleep(POLL_S)
                    continue
                return
            study.sampler = make_sampler(t, trial_seed(t.seed, len(trials)))
            objective.current = None
            try:
                study.optimize(
                    guarded, n_trials=1, catch=(RunFailed, Infeasible), callbacks=[report]
                )
            except KeyboardInterrupt:
                _requeue(study, storage, objective.current)
                raise
        finally:
            gate.release()


def _objective(ctx: TuneContext, gate: Gate) -> Any:
    """What a trial runs: training a run (mode train) or attacking a model (mode attack)."""
    if ctx.loaded.spec.tune.mode == "train":
        return TrainObjective(ctx, gate)
    from runner.tune.attack import AttackObjective

    return AttackObjective(ctx, gate)


def _trials(study: optuna.Study, storage: Any, info: StorageInfo) -> list[FrozenTrial]:
    """The study's trials, after failing those of workers that died."""
    if info.kind == "journal":
        reap_dead_workers(study, storage)
    else:
        optuna.storages.fail_stale_trials(study)
    return study.get_trials(deepcopy=False)


def _refuse_failing(trials: list[FrozenTrial], cap: int, study_name: str) -> None:
    """Stop when more than ``cap`` trials failed or were infeasible on their own (not by a dead
    worker or an interrupt): the search space is mostly invalid."""
    own = [
        str(tr.user_attrs.get("infeasible") or tr.user_attrs.get("failure", "failed"))
        for tr in trials
        if tr.state == TrialState.FAIL or "infeasible" in tr.user_attrs
    ]
    own = [f for f in own if not f.startswith(("its worker", "interrupted"))]
    if len(own) > cap:
        raise AdvrunError(
            f"{len(own)} trials of study '{study_name}' failed or were infeasible "
            f"(last: {own[-1]}); narrow tune.space so that its combinations are valid"
        )


def _requeue(study: optuna.Study, storage: Any, number: int | None) -> None:
    """Ctrl-C failed the trial in flight: queue its parameters again so it is not lost."""
    if number is None:
        return
    trial = study.get_trials(deepcopy=False)[number]
    if trial.state == TrialState.FAIL:
        retry_interrupted(study, trial)


def spawn(argv: list[str], n: int, device: str = "auto", per_gpu: int = 1) -> list[int]:
    """Run ``n`` worker processes (``advrun tune ... --worker``); return their exit codes.

    Cores and GPUs are split as for ``advrun run --jobs`` (:mod:`runner.execute.resources`):
    each worker gets cores // n torch threads, or a GPU of its own.
    """
    from runner.execute.resources import slots

    jobs, _ = slots(n, device, per_gpu)  # more workers than GPUs: they share them in turn
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runner", *argv, "--worker", f"w{i + 1}"],
            env={**os.environ, **jobs[i % len(jobs)].env()},
        )
        for i in range(n)
    ]
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        for p in procs:  # a terminal's Ctrl-C reached them too; a lone SIGINT is forwarded
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    return [p.returncode for p in procs]
