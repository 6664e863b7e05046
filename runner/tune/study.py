"""Samplers, pruners and the Optuna study of a ``tune:`` block."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from runner.errors import AdvrunError
from runner.spec.tune import ParamSpec, TuneSpec

optuna.logging.set_verbosity(optuna.logging.ERROR)  # advrun prints its own line per trial
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(t: TuneSpec, seed: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler; workers seed it per trial so no two trials share a random stream."""
    name = t.sampler_name
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        # Small populations so that a study of a few dozen trials sees several generations.
        return optuna.samplers.NSGAIISampler(
            population_size=max(4, min(50, t.trials // 3)), seed=seed
        )
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=max(1, min(10, t.trials // 3)), multivariate=True
    )


def make_pruner(t: TuneSpec, epochs: int | None) -> optuna.pruners.BasePruner:
    name = t.pruner_name
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=t.pruner_startup_trials, n_warmup_steps=t.pruner_warmup_epochs
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs or "auto", reduction_factor=3
        )
    return optuna.pruners.NopPruner()


def trial_seed(base: int, n_trials: int) -> int:
    """The sampler seed of the trial created when the study holds ``n_trials`` trials."""
    return (base * 1_000_003 + n_trials * 7_919) % 2**31


def open_study(
    t: TuneSpec, name: str, storage: optuna.storages.BaseStorage, epochs: int | None
) -> optuna.Study:
    """Create the study or load it (same directions required); enqueue first trials once."""
    directions = [g.direction for g in t.goals]
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=make_sampler(t, trial_seed(t.seed, 0)),
            pruner=make_pruner(t, epochs),
            load_if_exists=True,
        )
    except ValueError as e:  # Optuna: directions of an existing study differ
        raise AdvrunError(f"study '{name}': {e}; set tune.study_name to start a new one") from None
    have = [d.name.lower() for d in study.directions]
    if have != directions:
        raise AdvrunError(
            f"study '{name}' exists with directions {have}, the spec asks for {directions}; "
            "set tune.study_name to start a new study"
        )
    return study


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Sample every parameter of the space (a retried or enqueued trial gets its fixed values)."""
    out: dict[str, Any] = {}
    for key, p in space.items():
        if p.categorical is not None:
            out[key] = trial.suggest_categorical(key, p.categorical)
        elif p.int is not None:
            step = int(p.step) if p.step else 1
            out[key] = trial.suggest_int(key, p.int[0], p.int[1], step=step, log=p.log)
        else:
            assert p.float is not None
            out[key] = trial.suggest_float(key, p.float[0], p.float[1], step=p.step, log=p.log)
    return out
