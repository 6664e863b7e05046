"""Execute one run: train it (resumably), evaluate it, store everything atomically."""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runner import poisoning
from runner.catalog import RECIPES
from runner.compile import Run
from runner.device import seed_everything, select_device
from runner.errors import RunFailed
from runner.eval.evaluate import evaluate_run
from runner.execute.hooks import hooks_for
from runner.execute.options import Options
from runner.execute.prepare import load_split, prepare
from runner.execute.runlog import RunLog
from runner.execute.store import Store, now
from runner.fsio import read_json, write_json, write_with
from runner.models import build_model
from runner.provenance import git_commit, versions
from runner.recipes.base import TrainContext
from runner.train.counter import PassCounter
from runner.train.loop import fit, load_weights


def preflight(runs: list[Run], opts: Options) -> None:
    """Load each data set and build each model once, so bad input fails before any write."""
    if not runs:
        return
    select_device(opts.device)  # a missing CUDA device fails here
    checks = {(r.data.model_dump_json(), r.model.model_dump_json()): r for r in runs}
    for r in checks.values():
        ds, sp = load_split(r.data)  # cached for the runs
        shape = tuple(sp.x_train.shape[1:])
        build_model(r.model.arch, shape, ds.num_classes, r.model.kwargs, opts.allow_import)
        if r.poisoning is not None:  # its target and trigger fit the data
            poisoning.check_fits(r.poisoning, shape, ds.num_classes)


def execute_run(
    run: Run, store: Store, opts: Options, on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Train (or resume) and evaluate one run; return its metrics."""
    d = store.run_dir(run)
    status = "new" if opts.force else store.status(run)
    if status == "done":
        return read_json(d / "metrics.json")
    if opts.force or status == "failed":  # a fresh start, not a resume of a diverged state
        shutil.rmtree(d / "checkpoints", ignore_errors=True)
        (d / "metrics.json").unlink(missing_ok=True)  # no stale results beside a failed retrain
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "run.json", run.to_json())
    log = RunLog(d / "log.txt")
    hooks = hooks_for(opts)

    def epoch_done(row: dict[str, Any]) -> None:
        hooks.call("epoch_done", run, d, row)
        if on_epoch is not None:
            on_epoch(row)

    try:
        device = select_device(opts.device)
        seed_everything(run.seed)
        threat = run.threat
        pr = threat.pixel_range
        data = prepare(run.data, pr, device)
        model = build_model(
            run.model.arch, data.input_shape, data.num_classes, run.model.kwargs, opts.allow_import
        ).to(device)
        counter = PassCounter(model)
        ctx = TrainContext(
            device, pr, threat, data.num_classes, data.input_shape, counter, run.poisoning
        )
        recipe = RECIPES.load(run.recipe.kind)(run.recipe, ctx)
        x_train, y_train = poisoning.training_set(run, data, ctx)  # poisoned if the spec says so
        if status in ("new", "partial", "failed") or not (d / "checkpoints" / "last.pt").exists():
            store.set_status(run, "running", started=now(), device=str(device), stopped_epoch=None)
            log(f"training {run.slug} on {device} ({len(data.x_train)} examples)")
            hooks.call("run_started", run, d)
            bar = tqdm(
                total=int(run.recipe.epochs), desc=run.slug, leave=False, disable=not opts.bars
            )
            try:
                result = fit(
                    model,
                    recipe,
                    x_train,
                    y_train,
                    data.x_val,
                    data.y_val,
                    ctx,
                    run.seed,
                    d,
                    log,
                    on_epoch=epoch_done if hooks or on_epoch else None,
                    progress=bar,
                )
            finally:
                bar.close()
            store.set_status(
                run,
                "trained",
                best_epoch=result.best_epoch,
                stopped_early=result.stopped_early,
                stopped_epoch=result.stopped_epoch,
            )
        train_seconds, train_passes = training_cost(d)
        eval_start = counter.as_dict()
        # a run stopped early (catastrophic overfitting) restored its best epoch: evaluate that
        stopped = store_status(store, run).get("stopped_epoch")
        which = "best" if stopped else run.eval.checkpoint
        ck = d / "checkpoints" / f"{which}.pt"
        if not ck.exists():
            ck = d / "checkpoints" / "last.pt"
        load_weights(model, ck, device)
        n = run.eval.n or len(data.x_test)
        x_test, y_test = data.x_test[:n], data.y_test[:n]
        t1 = time.perf_counter()
        evaluation = evaluate_run(
            model, x_test, y_test, run.attacks, threat, data.num_classes, run.eval, log
        )
        examples, summary = evaluation.examples, evaluation.results
        eval_passes = {k: v - eval_start[k] for k, v in counter.as_dict().items()}
        counter.close()
        write_with(d / "examples.parquet", lambda p: examples.to_parquet(p, index=False))
        st = store_status(store, run)
        asr = poisoning.evaluate(run, model, x_test, y_test, summary)  # adds an "asr" row
        metrics = {
            "run_id": run.id,
            "slug": run.slug,
            "eval_hash": run.eval_hash,
            "model": run.model.name,
            "arch": run.model.arch,
            "recipe": run.recipe.name,
            "kind": run.recipe.kind,
            "seed": run.seed,
            "sweep": run.sweep,
            "hyperparameters": run.hyperparameters,
            "checkpoint": ck.stem,
            "best_epoch": st.get("best_epoch"),
            "stopped_early": st.get("stopped_early"),
            "stopped_epoch": st.get("stopped_epoch"),
            "poisoning": asr,
            "results": summary,
            "curves": evaluation.curves,
            "checklist": evaluation.checklist,
            "data_sha256": data.sha256,
            "device": str(device),
            "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t1,
            "train_passes": train_passes,
            "eval_passes": eval_passes,
            "versions": versions(),
            "git_commit": git_commit(),
        }
        write_json(d / "metrics.json", metrics)
        store.set_status(run, "done", finished=now())
        log("done")
        hooks.call("run_done", run, d, metrics)
        return metrics
    except RunFailed as e:
        store.set_status(run, "failed", diagnosis=str(e), finished=now())
        log(f"FAILED: {e}")
        hooks.call("run_failed", run, d, str(e))
        raise
    finally:
        log.close()


def store_status(store: Store, run: Run) -> dict[str, Any]:
    return read_json(store.run_dir(run) / "status.json") or {}


def training_cost(d: Path) -> tuple[float, dict[str, int]]:
    """Wall time and passes of all training epochs, from the epoch table (survives resumes)."""
    try:
        rows = list(csv.DictReader((d / "epochs.csv").open(encoding="utf-8")))
    except FileNotFoundError:
        rows = []
    seconds = sum(float(r["seconds"]) for r in rows)
    last = rows[-1] if rows else {}
    passes = {k: int(float(last.get(k) or 0)) for k in ("forward_passes", "backward_passes")}
    return seconds, passes
