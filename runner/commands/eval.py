"""``advrun eval SPEC --checkpoint PATH``: audit an existing model, no training.

Each model of the spec (or ``--model NAME``) is built, its weights loaded from a checkpoint in any
common format (torch's zip or legacy serialization through ``torch.load(weights_only=True)``:
pickled objects are refused; ``.safetensors``; wrappers, EMA weights and ``module.`` prefixes
undone by :mod:`runner.checkpoint`), from RobustBench's ``model_dir`` layout for a zoo model, or
taken from a model factory allowed with ``--allow-import``. It is then evaluated against the
spec's suite, curve and checklist exactly like a trained run, and stored as a run directory under
``runs/`` (``recipe`` and ``kind`` are ``audit``) whose rows join ``results.csv`` and
``curves.csv``; its metrics record the file's hash, format and what was unwrapped
(:class:`~runner.store.records.CheckpointProvenance`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.checkpoint import LoadedCheckpoint, load_checkpoint, load_into
from runner.commands.common import (
    add_baseline_argument,
    add_import_argument,
    add_spec_arguments,
    add_tracking_arguments,
    load,
    prepare_output,
)
from runner.compile import Audit, compile_audit
from runner.errors import AdvrunError
from runner.models.robustbench import checkpoint_path, fetch_hint, is_zoo
from runner.registry import did_you_mean
from runner.spec.core import ModelSpec
from runner.store import Passes, RunMetrics, RunStatus
from runner.store.records import CheckpointProvenance


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)
    add_import_argument(p)
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="the model's weights: a state_dict saved by torch.save (any torch version, "
        "wrapped or not) or a .safetensors file; optional for a RobustBench model in its "
        "model_dir layout and for a model factory that loads its own weights",
    )
    p.add_argument(
        "--weights",
        choices=("ema", "raw"),
        help="which weights of a checkpoint that keeps EMA weights beside the raw ones "
        "({model: ..., ema: ...}); overrides models[].weights",
    )
    p.add_argument("--model", metavar="NAME", help="audit only this model of the spec")
    p.add_argument("--device", help="override the spec's device (auto, cpu, cuda, cuda:N)")
    p.add_argument("--force", action="store_true", help="re-evaluate even if already done")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the results table")
    add_tracking_arguments(p)
    add_baseline_argument(p)


_FIT = "check the model's arch and kwargs in the spec"


def _load_into(model, state: dict[str, Any], path: Path, name: str) -> None:
    load_into(model, state, path, f"model '{name}'", _FIT)


@dataclasses.dataclass
class Weights:
    """Where one model's weights come from, and the model built with them (by the preflight)."""

    path: Path | None  # None: a model factory that loads its own weights
    how: str | None = None  # how the file was found, when not given by --checkpoint
    model: Any = None
    loaded: LoadedCheckpoint | None = None


def audit_model(
    audit: Audit,
    store,
    device_name: str,
    weights: Weights,
    force: bool,
    log=print,
) -> RunMetrics:
    """Evaluate one model like a run; store its run, status, metrics and examples."""
    from runner.device import seed_everything, select_device, set_threads
    from runner.execute.prepare import prepare
    from runner.execute.runlog import RunLog
    from runner.store import now

    slug = audit.slug
    d = store.run_dir(audit.id)
    old = store.read_metrics(audit)
    if old is not None and old.eval_hash == audit.eval_hash and not force:
        log(f"{slug}: already evaluated, skipped (--force to redo)")
        return old
    store.write_run(audit)
    device = select_device(device_name)
    seed_everything(0, audit.deterministic)
    set_threads(audit.threads, audit.deterministic)
    data = prepare(audit.data, audit.threat.pixel_range, device)  # cached by the preflight
    model = weights.model.to(device).eval()
    status = RunStatus(state="running", started=now(), device=str(device))
    store.write_status(audit, status)  # a new audit: no key of an earlier one is kept
    runlog = RunLog(d / "log.txt")

    def both(msg: str) -> None:
        runlog(msg)
        log(msg)

    try:
        metrics = _evaluate_audit(audit, d, model, data, device, weights, both)
        store.write_metrics(audit, metrics)
        store.write_status(audit, status.model_copy(update={"state": "done", "finished": now()}))
        both("done")
        return metrics
    except Exception as e:
        failed = {"state": "failed", "diagnosis": str(e)}
        store.write_status(audit, status.model_copy(update=failed))
        raise
    finally:
        runlog.close()


def _evaluate_audit(
    audit: Audit, d: Path, model: Any, data: Any, device: Any, weights: Weights,
    both: Callable[[str], None],
) -> RunMetrics:  # fmt: skip
    """The suite, curve, checklist and certification of one audited model; writes its
    examples.parquet and returns its metrics (not yet stored)."""
    from runner.certify.run import certify_phase
    from runner.eval.evaluate import EvalContext, evaluate_run
    from runner.fsio import write_with
    from runner.passes import PassCounter

    n = audit.eval.n or len(data.x_test)
    for line in weights.loaded.lines(str(device)) if weights.loaded else []:
        both(line)  # what the file held and what was unwrapped
    counter = PassCounter(model)
    t0 = time.perf_counter()
    both(f"auditing {audit.slug} on {device} ({n} test examples)")
    ev = evaluate_run(EvalContext(
        model, data.x_test[:n], data.y_test[:n], audit.threat, data.num_classes, audit.eval,
        audit.attacks, both,
    ))  # fmt: skip
    cert = certify_phase(audit.certify, model, data, audit.threat, None, both, None)
    ev.examples, ev.results = cert.joined(ev.examples, ev.results)
    counter.close()
    write_with(d / "examples.parquet", lambda p: ev.examples.to_parquet(p, index=False))
    return _audit_metrics(audit, ev, data, device, counter.as_dict(), t0, weights, cert.summaries)


def provenance(loaded: LoadedCheckpoint, how: str | None, device: str) -> CheckpointProvenance:
    """The store's record of the file an audit loaded."""
    return CheckpointProvenance(
        path=loaded.path, sha256=loaded.sha256, size_bytes=loaded.size_bytes,
        format=loaded.format, format_name=loaded.format_name, found=loaded.found,
        unwrapped=list(loaded.unwrapped), weights=loaded.weights, ignored=list(loaded.ignored),
        saved_on=list(loaded.saved_on), loaded_on=device, tensors=loaded.tensors,
        parameters=loaded.parameters, source=how,
    )  # fmt: skip


def _weights_of(m: ModelSpec, ckpt: Path | None) -> Weights:
    """Where model ``m``'s weights come from: --checkpoint, RobustBench's model_dir layout for a
    zoo model, or (no file) a model factory; a model that would be evaluated untrained is refused."""
    if ckpt is not None:
        return Weights(ckpt)
    if is_zoo(m.arch):
        path = checkpoint_path(m.arch, m.kwargs)
        if not path.is_file():
            raise AdvrunError(
                f"model '{m.name}' ({m.arch}): no --checkpoint and no local file at {path} "
                "(RobustBench's model_dir layout <model_dir>/<dataset>/<threat_model>/<name>.pt); "
                f"advrun never downloads: fetch it once where the network is allowed "
                f"({fetch_hint(m.arch, m.kwargs)}), or pass --checkpoint PATH"
            )
        return Weights(path, "RobustBench's model_dir layout")
    if ":" not in m.arch:
        raise AdvrunError(
            f"model '{m.name}' ({m.arch}) would be evaluated untrained: pass --checkpoint "
            "PATH, or use a model factory 'package.module:function' with --allow-import"
        )
    return Weights(None)


def _build_and_load(
    m: ModelSpec, w: Weights, shape: tuple[int, ...], classes: int, pixel_range, allow_import
) -> Weights:
    """Model ``m`` built on the CPU in eval mode, with the weights of ``w.path`` if it has one."""
    from runner.models import build_for_spec

    model = build_for_spec(m, shape, classes, pixel_range, allow_import)
    if w.path is None:
        return dataclasses.replace(w, model=model.eval())
    loaded = load_checkpoint(w.path, "cpu", m.weights)
    state, steps = loaded.state, []
    if is_zoo(m.arch):
        from runner.models.robustbench import adapt_keys

        state, steps = adapt_keys(model, state)
    _load_into(model, state, w.path, m.name)
    loaded = dataclasses.replace(
        loaded,
        state={},
        unwrapped=(*loaded.unwrapped, *steps),
        tensors=len(state),
        parameters=sum(int(v.numel()) for v in state.values()),
    )  # fmt: skip: the model holds the weights now
    return dataclasses.replace(w, model=model.eval(), loaded=loaded)


def _audit_metrics(
    audit: Audit,
    ev: Any,
    data: Any,
    device: Any,
    passes: dict[str, int],
    t0: float,
    w: Weights,
    certified: list[dict[str, Any]],
) -> RunMetrics:
    """The audit's metrics.json: a run's record with no training, its file's provenance and
    ``certified``: the randomized-smoothing summaries, one per noise level."""
    from runner.provenance import git_commit, versions

    m = audit.model
    prov = provenance(w.loaded, w.how, str(device)) if w.loaded is not None else None
    return RunMetrics(
        run_id=audit.id, slug=audit.slug, eval_hash=audit.eval_hash,
        model=m.name, arch=m.arch, recipe="audit",
        kind="audit", seed=None, sweep={}, hyperparameters={},
        checkpoint=audit.checkpoint, checkpoint_sha256=audit.checkpoint_sha256,
        checkpoint_provenance=prov, best_epoch=None, stopped_early=None,
        results=ev.results, curves=ev.curves, checklist=ev.checklist,
        **({"escalation": ev.escalation} if ev.escalation else {}),
        certified=certified,
        data_sha256=data.sha256, class_names=data.class_names, device=str(device),
        train_seconds=0.0, eval_seconds=time.perf_counter() - t0,
        train_passes=Passes(forward_passes=0, backward_passes=0),
        eval_passes=passes, versions=versions(), git_commit=git_commit(),
    )  # fmt: skip


def _preflight(
    models: list[ModelSpec], ckpt: Path | None, plan, device_name: str, allow_import: list[str]
) -> dict[str, Weights]:
    """Data, device, models and checkpoints checked before anything is written: a bad file or
    factory leaves the output directory as it was. Each model is built and loaded here, once."""
    from runner.device import select_device
    from runner.execute.prepare import load_split

    select_device(device_name)
    ds, sp = load_split(plan.runs[0].data)  # cached for the audit
    shape = tuple(sp.x_train.shape[1:])
    sources = {m.name: _weights_of(m, ckpt) for m in models}  # every file found before loading
    return {
        m.name: _build_and_load(
            m, sources[m.name], shape, ds.num_classes, plan.threat.pixel_range, allow_import
        )
        for m in models
    }


def _models(spec, args: argparse.Namespace) -> list[ModelSpec]:
    """The spec's models to audit (``--model``), with ``--weights`` applied."""
    models = list(spec.models)
    if args.model:
        names = [m.name for m in models]
        if args.model not in names:
            raise AdvrunError(
                f"--model '{args.model}' is not a model of the spec{did_you_mean(args.model, names)};"
                f" models: {', '.join(names)}"
            )
        models = [m for m in models if m.name == args.model]
    if args.weights:
        models = [m.model_copy(update={"weights": args.weights}) for m in models]
    return models


def run(args: argparse.Namespace) -> int:
    loaded, plan, store = load(args)
    spec = loaded.spec
    models = _models(spec, args)
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    for m in models:
        _weights_of(m, ckpt)  # a model that would run untrained: refused before anything else
    from runner import track
    from runner.execute import results
    from runner.execute.progress import accuracies
    from runner.fsio import write_text
    from runner.report.baseline import load_baseline, remember_baseline
    from runner.report.experiment import write_results

    tracking = track.mlflow_settings(spec, args.mlflow, args.no_mlflow)
    track.tracking_options(tracking)  # the extra is missing: say so before any compute
    if args.baseline:
        load_baseline(args.baseline)  # a missing or empty baseline fails before any compute
    device_name = args.device or spec.device
    built = _preflight(models, ckpt, plan, device_name, args.allow_import)  # before any write
    prepare_output(store.root)  # a read-only or full output directory fails before any write
    write_text(store.root / "spec.yaml", loaded.text)
    remember_baseline(store.root, args.baseline)
    t0 = time.perf_counter()
    for m in models:
        w = built.pop(m.name)  # each model's weights are freed once it is audited
        path, sha = (str(w.path), w.loaded.sha256) if w.loaded else (None, None)
        audit = compile_audit(spec, plan, m, path, sha, w.path.stem if w.path else "factory")
        metrics = audit_model(
            audit, store, device_name, w, args.force,
            log=(lambda s: None) if args.quiet else print,
        )  # fmt: skip
        if not args.quiet:
            shown = accuracies(metrics)
            print(f"{metrics.slug}: {shown}")
    df = write_results(plan, store)  # results, curves, report.html and the model cards
    print(results.format_table(df))
    print(f"results: {store.root / 'results.csv'} ({time.perf_counter() - t0:.1f}s)")
    from runner.report.hooks import gate_exit_code

    code = gate_exit_code(spec, store.root)  # the spec's gate: exit 3 when a threshold fails
    if tracking is not None:  # audits are logged like runs, nested under the experiment
        track.sync(tracking, store.root, verbose=not args.quiet)
    return code
