"""``advrun eval SPEC --checkpoint PATH``: audit an existing model, no training.

Each model of the spec (or ``--model NAME``) is built, its weights loaded from a plain
``state_dict`` (``torch.load(weights_only=True)``: pickled objects are refused), or taken from a
model factory allowed with ``--allow-import``; it is then evaluated against the spec's suite,
curve and checklist exactly like a trained run, and stored as a run directory under ``runs/``
(``recipe`` and ``kind`` are ``audit``) whose rows join ``results.csv`` and ``curves.csv``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from runner.checkpoint import load_into, load_state_dict
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
from runner.fsio import sha256_file
from runner.registry import did_you_mean
from runner.store import Passes, RunMetrics, RunStatus


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)
    add_import_argument(p)
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="a saved state_dict (torch.save(model.state_dict(), PATH)); optional for a model "
        "factory that loads its own weights",
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


def audit_model(
    audit: Audit,
    store,
    device_name: str,
    allow_import: list[str],
    force: bool,
    log=print,
) -> RunMetrics:
    """Evaluate one model like a run; store its run, status, metrics and examples."""
    from runner.certify.run import certify_phase
    from runner.device import seed_everything, select_device, set_threads
    from runner.eval.evaluate import EvalContext, evaluate_run
    from runner.execute.prepare import prepare
    from runner.execute.runlog import RunLog
    from runner.fsio import write_with
    from runner.passes import PassCounter
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
    data = prepare(audit.data, audit.threat.pixel_range, device)
    model = _audited_model(audit, data, device, allow_import)
    status = RunStatus(state="running", started=now(), device=str(device))
    store.write_status(audit, status)  # a new audit: no key of an earlier one is kept
    runlog = RunLog(d / "log.txt")

    def both(msg: str) -> None:
        runlog(msg)
        log(msg)

    try:
        n = audit.eval.n or len(data.x_test)
        counter = PassCounter(model)
        t0 = time.perf_counter()
        both(f"auditing {slug} on {device} ({n} test examples)")
        ev = evaluate_run(EvalContext(
            model, data.x_test[:n], data.y_test[:n], audit.threat, data.num_classes, audit.eval,
            audit.attacks, both,
        ))  # fmt: skip
        cert = certify_phase(audit.certify, model, data, audit.threat, None, both, None)
        ev.examples, ev.results = cert.joined(ev.examples, ev.results)
        counter.close()
        write_with(d / "examples.parquet", lambda p: ev.examples.to_parquet(p, index=False))
        metrics = _audit_metrics(audit, ev, data, device, counter.as_dict(), t0, cert.summaries)
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


def _audited_model(audit: Audit, data: Any, device: Any, allow_import: list[str]) -> Any:
    """The audited model on ``device`` in eval mode, with the checkpoint's weights if given."""
    from runner.models import build_for_spec

    m = audit.model
    ckpt = Path(audit.checkpoint) if audit.checkpoint else None
    model = build_for_spec(
        m, data.input_shape, data.num_classes, audit.threat.pixel_range, allow_import
    )
    if ckpt is not None:
        _load_into(model, load_state_dict(ckpt, device), ckpt, m.name)
    return model.to(device).eval()


def _audit_metrics(
    audit: Audit,
    ev: Any,
    data: Any,
    device: Any,
    passes: dict[str, int],
    t0: float,
    certified: list[dict[str, Any]],
) -> RunMetrics:
    """The audit's metrics.json: a run's record with no training (``certified``: the
    randomized-smoothing summaries, one per noise level)."""
    from runner.provenance import git_commit, versions

    m = audit.model
    return RunMetrics(
        run_id=audit.id, slug=audit.slug, eval_hash=audit.eval_hash,
        model=m.name, arch=m.arch, recipe="audit",
        kind="audit", seed=None, sweep={}, hyperparameters={},
        checkpoint=audit.checkpoint, checkpoint_sha256=audit.checkpoint_sha256,
        best_epoch=None, stopped_early=None,
        results=ev.results, curves=ev.curves, checklist=ev.checklist,
        certified=certified,
        data_sha256=data.sha256, class_names=data.class_names, device=str(device),
        train_seconds=0.0, eval_seconds=time.perf_counter() - t0,
        train_passes=Passes(forward_passes=0, backward_passes=0),
        eval_passes=passes, versions=versions(), git_commit=git_commit(),
    )  # fmt: skip


def _preflight(models, ckpt: Path | None, plan, device_name: str, allow_import: list[str]) -> None:
    """Data, device, model and checkpoint checked before anything is written: a bad file or
    factory leaves the output directory as it was."""
    from runner.device import select_device
    from runner.execute.prepare import load_split
    from runner.models import build_model

    select_device(device_name)
    ds, sp = load_split(plan.runs[0].data)  # cached for the audit
    state = load_state_dict(ckpt, "cpu") if ckpt is not None else None
    for m in models:
        model = build_model(
            m.arch, tuple(sp.x_train.shape[1:]), ds.num_classes, m.kwargs, allow_import
        )
        if state is not None:
            _load_into(model, state, ckpt, m.name)


def run(args: argparse.Namespace) -> int:
    loaded, plan, store = load(args)
    spec = loaded.spec
    models = list(spec.models)
    if args.model:
        names = [m.name for m in models]
        if args.model not in names:
            raise AdvrunError(
                f"--model '{args.model}' is not a model of the spec{did_you_mean(args.model, names)};"
                f" models: {', '.join(names)}"
            )
        models = [m for m in models if m.name == args.model]
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    for m in models:
        if ckpt is None and ":" not in m.arch:
            raise AdvrunError(
                f"model '{m.name}' ({m.arch}) would be evaluated untrained: pass --checkpoint "
                "PATH, or use a model factory 'package.module:function' with --allow-import"
            )
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
    _preflight(models, ckpt, plan, device_name, args.allow_import)  # fail before any write
    prepare_output(store.root)  # a read-only or full output directory fails before any write
    write_text(store.root / "spec.yaml", loaded.text)
    remember_baseline(store.root, args.baseline)
    sha = sha256_file(ckpt) if ckpt is not None and ckpt.is_file() else None
    t0 = time.perf_counter()
    for m in models:
        audit = compile_audit(
            spec, plan, m, str(ckpt) if ckpt else None, sha, ckpt.stem if ckpt else "factory"
        )
        metrics = audit_model(
            audit, store, device_name, args.allow_import, args.force,
            log=(lambda s: None) if args.quiet else print,
        )  # fmt: skip
        if not args.quiet:
            shown = accuracies(metrics)
            print(f"{metrics.slug}: {shown}")
    df = write_results(plan, store, report=False)
    print(results.format_table(df))
    print(f"results: {store.root / 'results.csv'} ({time.perf_counter() - t0:.1f}s)")
    from runner.report.hooks import gate_exit_code

    code = gate_exit_code(spec, store.root)  # the spec's gate: exit 3 when a threshold fails
    if tracking is not None:  # audits are logged like runs, nested under the experiment
        track.sync(tracking, store.root, verbose=not args.quiet)
    return code
