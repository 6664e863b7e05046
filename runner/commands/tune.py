"""``advrun tune SPEC``: run (or continue) the spec's Optuna study; every trial is a stored run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runner.commands.common import (
    add_import_argument,
    add_spec_arguments,
    add_tracking_arguments,
    load,
    prepare_output,
)
from runner.errors import EXIT_FAILED, AdvrunError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)
    add_import_argument(p)
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="worker processes on this machine"
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="study storage: postgresql://user:pass@host/db (several machines), sqlite:///f.db, "
        "or a journal file (default: <output>/tune/study.journal)",
    )
    p.add_argument(
        "--export", metavar="FILE", help="write the spec with the best parameters filled in"
    )
    p.add_argument(
        "--trial", type=int, metavar="N", help="export this trial instead of the best one"
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="S",
        help="database storage: heartbeat seconds; a trial silent for 3x this is failed and retried",
    )
    p.add_argument("--device", help="override the spec's device (auto, cpu, cuda, cuda:N)")
    p.add_argument(
        "--launcher",
        choices=("local", "ray"),
        default="local",
        help="local (default: --workers processes on this machine) or ray (--workers Ray tasks "
        "on a cluster, all on the study's storage; several machines need PostgreSQL)",
    )
    p.add_argument(
        "--address", metavar="ADDR", help="--launcher ray: the cluster to join (default: local)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    add_tracking_arguments(p)
    p.add_argument("--worker", metavar="TAG", help=argparse.SUPPRESS)  # set by --workers


def _worker_argv(args: argparse.Namespace, root: Path, storage: str, device: str) -> list[str]:
    argv = ["tune", args.spec, *args.overrides, "-o", str(root), "--storage", storage]
    argv += ["--heartbeat", str(args.heartbeat), "--device", device]
    for pattern in args.allow_import:
        argv += ["--allow-import", pattern]
    if args.mlflow:
        argv += ["--mlflow", args.mlflow]
    if args.no_mlflow:
        argv += ["--no-mlflow"]
    return argv + (["-q"] if args.quiet else [])


def run(args: argparse.Namespace) -> int:
    loaded, _plan, store = load(args)
    spec = loaded.spec
    _check_args(args, spec)
    from runner import track
    from runner.tune import summary as summ
    from runner.tune.storage import Gate
    from runner.tune.worker import work

    t = spec.tune
    prepare_output(store.root)
    tune_dir = store.root / "tune"
    tune_dir.mkdir(parents=True, exist_ok=True)
    ctx, info, tracking = _context(args, loaded, store, tune_dir)
    if args.worker:
        work(ctx, info, tag=f"[{args.worker}] ")
        return 0

    study = _open(ctx, info, Gate(info, ctx.study_name))
    done = _finished(study)
    print(
        f"study {ctx.study_name} ({t.mode}, {', '.join(g.label for g in t.goals)}): "
        f"{done}/{t.trials} finished trials, storage {info.shown}",
        flush=True,
    )
    failed_workers = _run_workers(args, ctx, info)
    summary = summ.summarize(study, t, info.shown)
    summ.write(summary, tune_dir)
    _print(summary)
    print(f"summary: {tune_dir / 'summary.json'}")
    if tracking is not None:  # the study run with every trial's objective values
        track.sync(tracking, store.root, verbose=not args.quiet)
    complete = _finished(study) >= t.trials
    if args.export:
        _export(ctx, study, args.export, args.trial)
    if failed_workers:
        print(
            f"{failed_workers} worker(s) exited with an error"
            + ("" if complete else "; run the same command again to finish the study (it resumes)"),
            file=sys.stderr,
        )
    return 0 if complete else EXIT_FAILED


def _check_args(args: argparse.Namespace, spec: Any) -> None:
    if spec.tune is None:
        raise AdvrunError(
            f"{args.spec} has no tune: block; add one (see specs/tune.yaml and docs/tuning.md)"
        )
    if args.workers < 1:
        raise AdvrunError("--workers must be at least 1")
    if args.heartbeat < 1:
        raise AdvrunError("--heartbeat must be at least 1 second")


def _context(args: argparse.Namespace, loaded: Any, store: Any, tune_dir: Path):
    """The study's context (name, options, MLflow nesting), storage, and MLflow settings."""
    from runner import track
    from runner.execute import Options
    from runner.tune.build import study_name
    from runner.tune.objective import TuneContext
    from runner.tune.storage import storage_info

    spec = loaded.spec
    info = storage_info(args.storage, tune_dir, args.heartbeat)
    name = study_name(spec, loaded.data)
    tracking = track.mlflow_settings(spec, args.mlflow, args.no_mlflow)
    opts = Options(
        device=args.device or spec.device,
        allow_import=args.allow_import,
        verbose=not args.quiet,
        tracking=track.tracking_options(tracking, study=name),  # trials nest under the study
    )
    return TuneContext(loaded, store, name, opts), info, tracking


def _run_workers(args: argparse.Namespace, ctx: Any, info: Any) -> int:
    """Run the trials here, in worker processes or on Ray; the number of workers that failed."""
    from runner.tune.worker import spawn, work

    device = ctx.opts.device
    if args.launcher == "ray":
        from runner.tune.ray_workers import tune_on_ray

        return tune_on_ray(ctx, info, args.workers, args.address)
    if args.address:
        raise AdvrunError("--address joins a Ray cluster; add --launcher ray")
    if args.workers > 1:
        codes = spawn(_worker_argv(args, ctx.store.root, info.url, device), args.workers, device)
        return sum(1 for c in codes if c != 0)
    work(ctx, info)
    return 0


def _open(ctx, info, gate):
    """Create or load the study; queue the spec's first trials once per study."""
    from runner.tune.build import study_fingerprint
    from runner.tune.study import open_study
    from runner.tune.worker import target_epochs

    t = ctx.loaded.spec.tune
    study = open_study(t, ctx.study_name, info.open(), target_epochs(ctx))
    gate.acquire()
    try:
        if not study.user_attrs.get("advrun_enqueued"):
            for params in t.enqueue:
                study.enqueue_trial(params, skip_if_exists=True)
            study.set_user_attr("advrun_enqueued", True)
            study.set_user_attr("spec", ctx.loaded.spec.name)
            study.set_user_attr("objectives", [g.label for g in t.goals])
            study.set_user_attr("fingerprint", study_fingerprint(ctx.loaded.spec, ctx.loaded.data))
    finally:
        gate.release()
    return study


def _finished(study) -> int:
    """Complete and pruned trials (infeasible parameter sets are pruned but not counted)."""
    from optuna.trial import TrialState

    from runner.tune.objective import counts

    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return sum(1 for tr in study.get_trials(deepcopy=False, states=done) if counts(tr))


def _fmt(row: dict) -> str:
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items()
    )
    vals = ", ".join(f"{v:.4f}" for v in row["values"] or [])
    return f"trial {row['number']}: {vals}  ({params})  run {row['run_id']}"


def _print(s: dict) -> None:
    counts = ", ".join(f"{v} {k}" for k, v in s["counts"].items())
    print(f"trials: {counts}")
    if "pareto_front" in s:
        print(f"Pareto front ({', '.join(s['objectives'])}):")
        for row in s["pareto_front"]:
            print(f"  {_fmt(row)}")
    elif s.get("best"):
        print(f"best ({s['objectives'][0]}): {_fmt(s['best'])}")
        imp = s.get("improvement") or {}
        if imp.get("why_not"):
            print(f"no improvement on the first trial: {imp['why_not']}")
        elif imp:
            print(
                f"improved on the first trial (trial {imp['first_trial']}: {imp['first']:.4f}) "
                f"by {imp['improved_by']:+.4f}"
            )
    if isinstance(s.get("param_importances"), dict) and s["param_importances"]:
        print(f"parameter importances: {s['param_importances']}")


def _export(ctx, study, dest: str, number: int | None) -> None:
    from optuna.trial import TrialState

    from runner.tune.build import edits
    from runner.tune.export import export_spec

    t = ctx.loaded.spec.tune
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise AdvrunError("no complete trial yet: nothing to export")
    if number is not None:
        chosen = next((tr for tr in complete if tr.number == number), None)
        if chosen is None:
            raise AdvrunError(f"trial {number} is not a complete trial of study {study.study_name}")
    elif not t.multi:
        chosen = study.best_trial
    else:  # a front has no single best: take the member with the best mean (sign-adjusted)
        signs = [1 if g.direction == "maximize" else -1 for g in t.goals]
        chosen = max(
            study.best_trials,
            key=lambda tr: sum(s * v for s, v in zip(signs, tr.values, strict=True)),
        )
    params = dict(chosen.params)
    vals = ", ".join(f"{g.label} {v:.4f}" for g, v in zip(t.goals, chosen.values, strict=True))
    header = f"exported by advrun tune: study {study.study_name}, trial {chosen.number} ({vals})"
    if t.mode == "attack" and "loss" in params and params["loss"] != "ce":
        header += (
            f"\nthe search used loss {params['loss']}, which the {t.target.attack} attack spec "
            "cannot express: the exported attack uses its default loss"
        )
    kept = export_spec(
        ctx.loaded, edits(ctx.loaded.spec, ctx.loaded.data, params), header, Path(dest)
    )
    print(
        f"exported trial {chosen.number} to {dest}"
        + ("" if kept else " (written as plain YAML: the original comments could not be kept)")
    )
