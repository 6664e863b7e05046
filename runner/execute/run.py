"""Execute one run: train it (resumably), evaluate it, store everything atomically."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runner import poisoning
from runner.catalog import DEFENSES, RECIPES
from runner.certify.run import certify_phase
from runner.compile import Run
from runner.defenses import pipeline
from runner.defenses.features import feature_module
from runner.defenses.metrics import effect, poisoning_result, result_rows
from runner.defenses.pipeline import PoisonJob, TrainingSet
from runner.device import seed_everything, select_device, set_threads
from runner.dist import Dist
from runner.errors import RunFailed
from runner.eval.evaluate import EvalContext, evaluate_run
from runner.eval.resume import EvalCheckpoint
from runner.execute.claim import Claim
from runner.execute.hooks import Hooks, hooks_for
from runner.execute.options import Options
from runner.execute.prepare import load_split, prepare
from runner.execute.runlog import RunLog
from runner.fsio import sha256_file, write_with
from runner.models import build_for_spec
from runner.passes import PassCounter
from runner.provenance import git_commit, versions
from runner.recipes.base import TrainContext
from runner.store import Execution, PoisoningResult, RunMetrics, Store, now, read_epochs
from runner.train.augment import Augment
from runner.train.loop import FitContext, fit, load_weights


def preflight(runs: list[Run], opts: Options) -> None:
    """Load each data set and build each model once, so bad input fails before any write."""
    if not runs:
        return
    select_device(opts.device)  # a missing CUDA device fails here
    checks = {(r.data.model_dump_json(), r.model.model_dump_json()): r for r in runs}
    for r in checks.values():
        ds, sp = load_split(r.data)  # cached for the runs
        shape = tuple(sp.x_train.shape[1:])
        Augment(r.data.augment, (0.0, 1.0), shape)  # e.g. a crop larger than npz images
        build_for_spec(r.model, shape, ds.num_classes, allow_import=opts.allow_import)
        if r.poisoning is not None:  # its target and trigger fit the data
            poisoning.check_fits(r.poisoning, shape, ds.num_classes)
    _check_feature_layers(runs, opts)


def _check_feature_layers(runs: list[Run], opts: Options) -> None:
    """A detector reads a layer the model must have (a SpecValueError, at file:line:col)."""
    checked = set()
    for r in runs:
        p = r.poisoning
        if p is None or not DEFENSES.load(str(p.defense)).needs_features:
            continue
        key = (r.data.model_dump_json(), r.model.model_dump_json(), p.feature_layer)
        if key in checked:
            continue
        checked.add(key)
        ds, sp = load_split(r.data)
        model = build_for_spec(r.model, tuple(sp.x_train.shape[1:]), ds.num_classes,
                               allow_import=opts.allow_import)  # fmt: skip
        feature_module(model, p.feature_layer)


def execute_run(
    run: Run,
    store: Store,
    opts: Options,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    claim: Claim | None = None,
    dist: Dist | None = None,
) -> RunMetrics | None:
    """Train (or resume) and evaluate one run; return its metrics (None on ranks but 0).

    The caller holds the run's ``claim`` (see :mod:`runner.execute.claim`); it is checked before
    every write, so a process that lost its claim stops instead of overwriting another's work.
    Under torchrun (``dist``) every rank calls this; rank 0 holds the claim, writes the store and
    evaluates, and the other ranks return None once it has.
    """
    d = store.run_dir(run)
    main = dist is None or dist.main
    guard = claim.check if claim is not None else (lambda: None)
    status = "new" if opts.force else store.status(run)
    if dist is not None:
        status = dist.broadcast(status)
    if status == "done":
        return store.read_metrics(run) if main else None
    st0 = store.read_status(run)
    # a fresh start after --force or a diverged run; a killed job resumes from its last epoch
    if main and (opts.force or (status == "failed" and not st0.resumable)):
        guard()
        shutil.rmtree(d / "checkpoints", ignore_errors=True)
        shutil.rmtree(d / EVAL_STATE, ignore_errors=True)
        shutil.rmtree(store.at(run).poisoning_dir, ignore_errors=True)  # defense, crafted poisons
        store.remove_metrics(run)  # no stale results beside a failed retrain
    if main:
        d.mkdir(parents=True, exist_ok=True)
        guard()
        store.write_run(run)
    log: Any = RunLog(d / "log.txt") if main else _Silent()
    hooks = hooks_for(opts) if main else Hooks([])
    train_needed = (
        status in ("new", "partial", "failed") or not (d / "checkpoints" / "last.pt").exists()
    )
    if dist is not None:  # every rank must agree, and read nothing rank 0 is about to delete
        train_needed = dist.broadcast(train_needed)

    def epoch_done(row: dict[str, Any]) -> None:
        hooks.call("epoch_done", run, d, row)
        if on_epoch is not None:
            on_epoch(row)

    try:
        device = dist.device(opts.device) if dist is not None else select_device(opts.device)
        seed_everything(run.seed, run.deterministic)
        threads = set_threads(run.threads, run.deterministic)
        threat = run.threat
        pr = threat.pixel_range
        data = prepare(run.data, pr, device)
        model = build_for_spec(
            run.model, data.input_shape, data.num_classes, pr, opts.allow_import
        ).to(device)
        counter = PassCounter(model)
        ctx = TrainContext(
            device, pr, threat, data.num_classes, data.input_shape, counter, run.poisoning
        )
        ctx.augment = Augment(run.data.augment, pr, data.input_shape) or None
        recipe = RECIPES.load(run.recipe.kind)(run.recipe, ctx)
        poisoned = _poisoned_training_set(run, store, opts, data, ctx, log, guard, dist)
        x_train, y_train = (
            (data.x_train, data.y_train) if poisoned is None else (poisoned.x, poisoned.y)
        )
        world = dist.world_size if dist is not None else 1
        execution = Execution(
            device=str(device), threads=threads, deterministic=run.deterministic,
            world_size=world, batch_size=int(run.recipe.batch_size),
            per_rank_batch_size=-(-int(run.recipe.batch_size) // world),
            **({"backend": dist.backend} if dist is not None else {}),
        )  # fmt: skip
        if train_needed:
            if main:
                guard()
                store.set_status(run, "running", execution, started=now(), stopped_epoch=None,
                                 resumable=None, diagnosis=None)  # fmt: skip
            log(
                f"training {run.slug} on {device} ({len(data.x_train)} examples, {threads} "
                f"threads; {data.memory})"
            )
            hooks.call("run_started", run, d)
            bar = tqdm(
                total=int(run.recipe.epochs), desc=run.slug, leave=False,
                disable=not (opts.bars and main),
            )  # fmt: skip
            try:
                result = _deterministic_ops(run, lambda: fit(FitContext(
                    model, recipe, x_train, y_train, data.x_val, data.y_val, ctx, run.seed, d, log,
                    on_epoch=epoch_done if main and (hooks or on_epoch) else None, progress=bar,
                    guard=guard, dist=dist,
                )))  # fmt: skip
            finally:
                bar.close()
            if main:
                guard()
                store.set_status(
                    run,
                    "trained",
                    best_epoch=result.best_epoch,
                    stopped_early=result.stopped_early,
                    stopped_epoch=result.stopped_epoch,
                )
        if not main:  # rank 0 evaluates and writes; wait for it, then on to the next run
            counter.close()
            dist.barrier()
            return None
        try:
            return _evaluate_and_store(run, store, opts, d, model, data, threat, counter, guard,
                                       log, hooks, execution, poisoned)  # fmt: skip
        finally:
            if dist is not None:
                dist.barrier()
    except RunFailed as e:
        if main and (claim is None or not claim.lost):
            store.set_status(run, "failed", diagnosis=str(e), finished=now())
            log(f"FAILED: {e}")
            hooks.call("run_failed", run, d, str(e))
        raise
    finally:
        log.close()


def _evaluate_and_store(
    run: Run,
    store: Store,
    opts: Options,
    d: Path,
    model: Any,
    data: Any,
    threat: Any,
    counter: PassCounter,
    guard: Callable[[], None],
    log: Any,
    hooks: Hooks,
    execution: Execution,
    poisoned: TrainingSet | None = None,
) -> RunMetrics:
    """Evaluate the chosen checkpoint against the suite; write examples, metrics and status."""
    device = next(model.parameters()).device
    train_seconds, train_passes = training_cost(d)
    eval_start = counter.as_dict()
    # a run stopped early (catastrophic overfitting) restored its best epoch: evaluate that
    stopped = store.read_status(run).stopped_epoch
    which = "best" if stopped else run.eval.checkpoint
    ck = d / "checkpoints" / f"{which}.pt"
    if not ck.exists():
        ck = d / "checkpoints" / "last.pt"
    load_weights(model, ck, device)
    n = run.eval.n or len(data.x_test)
    x_test, y_test = data.x_test[:n], data.y_test[:n]
    t1 = time.perf_counter()
    kept = EvalCheckpoint(d / EVAL_STATE, f"{run.eval_hash}:{sha256_file(ck)}")
    evaluation = _deterministic_ops(run, lambda: evaluate_run(EvalContext(
        model, x_test, y_test, threat, data.num_classes, run.eval, run.attacks, log,
        checkpoint=_Guarded(kept, guard),
    )))  # fmt: skip
    certified = _deterministic_ops(run, lambda: certify_phase(
        run.certify, model, data, threat, getattr(run.recipe, "sigma", None), log,
        _Guarded(kept, guard),
    ))  # fmt: skip
    examples, summary = certified.joined(evaluation.examples, evaluation.results)
    eval_passes = {k: v - eval_start[k] for k, v in counter.as_dict().items()}
    counter.close()
    guard()
    write_with(d / "examples.parquet", lambda p: examples.to_parquet(p, index=False))
    st = store.read_status(run)
    asr = _poisoning_result(run, model, x_test, y_test, poisoned)
    if asr is not None:  # the asr, source-class accuracy and filter rows (scope: poisoning)
        summary = [*summary, *(r.model_dump(exclude_none=True) for r in result_rows(asr))]
    metrics = RunMetrics(
        run_id=run.id,
        slug=run.slug,
        eval_hash=run.eval_hash,
        model=run.model.name,
        arch=run.model.arch,
        recipe=run.recipe.name,
        kind=run.recipe.kind,
        seed=run.seed,
        sweep=run.sweep,
        hyperparameters=run.hyperparameters,
        checkpoint=ck.stem,
        best_epoch=st.best_epoch,
        stopped_early=st.stopped_early,
        stopped_epoch=st.stopped_epoch,
        poisoning=asr,
        results=summary,
        curves=evaluation.curves,
        checklist=evaluation.checklist,
        # only when it ran: a run without a signal keeps the keys it always had
        **({"escalation": evaluation.escalation} if evaluation.escalation else {}),
        certified=certified.summaries,
        data_sha256=data.sha256,
        class_names=data.class_names,
        device=str(device),
        execution=execution.model_copy(update={"train": st.execution}),
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - t1,
        train_passes=train_passes,
        eval_passes=eval_passes,
        versions=versions(),
        git_commit=git_commit(),
    )
    guard()
    store.write_metrics(run, metrics)
    store.set_status(run, "done", finished=now())
    kept.clear()
    log("done")
    hooks.call("run_done", run, d, metrics)
    return metrics


def _poisoned_training_set(
    run: Run, store: Store, opts: Options, data: Any, ctx: Any, log: Any,
    guard: Callable[[], None], dist: Dist | None,
) -> TrainingSet | None:  # fmt: skip
    """The poisoned (and filtered) training set of a run with a poisoning block, else None."""
    p = run.poisoning
    if p is None:
        return None
    aux = p.scenario != "backdoor" or DEFENSES.load(str(p.defense)).needs_features
    if aux and dist is not None and dist.world_size > 1:
        raise RunFailed(
            "a poisoning defense or the clean-label scenario trains auxiliary models in one "
            "process; run this spec without torchrun"
        )
    device = ctx.device

    def build() -> Any:
        m = build_for_spec(run.model, data.input_shape, data.num_classes, run.threat.pixel_range,
                           opts.allow_import)  # fmt: skip
        return m.to(device)

    return pipeline.training_set(PoisonJob(run, store.at(run), data, ctx, build, log, guard))


def _poisoning_result(
    run: Run, model: Any, x: Any, y: Any, poisoned: TrainingSet | None
) -> PoisoningResult | None:
    """The evaluated model's clean, source-class accuracy and ASR, with the defense's record."""
    p = run.poisoning
    if p is None or poisoned is None:
        return None
    after = effect(model, x, y, p, run.threat.pixel_range, run.eval.batch_size, run.eval.bootstrap)
    return poisoning_result(p, after, poisoned.poisons, poisoned.kept)


EVAL_STATE = "eval"  # RUN/eval/: finished attacks, curves and checklist of an interrupted run


class _Guarded:
    """The evaluation checkpoint, with the claim checked before every save."""

    def __init__(self, inner: EvalCheckpoint, guard: Callable[[], None]) -> None:
        self.inner, self.guard = inner, guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name.startswith("save"):

            def guarded(*args: Any) -> Any:
                self.guard()
                return attr(*args)

            return guarded
        return attr


def _deterministic_ops(run: Run, work: Callable[[], Any]) -> Any:
    """``work()``; with ``deterministic: true``, an operation torch cannot run deterministically
    fails the run with a message instead of a traceback."""
    try:
        return work()
    except RuntimeError as e:
        if run.deterministic and "deterministic" in str(e):
            first = str(e).strip().splitlines()[0]
            raise RunFailed(
                f"deterministic: true, but an operation has no deterministic implementation on "
                f"this device ({first[:240]}); set deterministic: false, or use another device"
            ) from None
        raise


def training_cost(d: Path) -> tuple[float, dict[str, int]]:
    """Wall time and passes of all training epochs, from the epoch table (survives resumes)."""
    rows = read_epochs(d)
    seconds = sum(float(r["seconds"]) for r in rows)
    last = rows[-1] if rows else {}
    passes = {k: int(float(last.get(k) or 0)) for k in ("forward_passes", "backward_passes")}
    return seconds, passes


class _Silent:
    """The log of a rank other than 0: rank 0 writes the run's log."""

    def __call__(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass
