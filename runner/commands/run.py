"""``advrun run SPEC [KEY=VALUE ...]``: train, attack and store every run; skip what is done."""

from __future__ import annotations

import argparse
import fnmatch

from runner.commands.common import (
    add_baseline_argument,
    add_import_argument,
    add_spec_arguments,
    add_tracking_arguments,
    load,
    prepare_output,
)
from runner.errors import EXIT_FAILED, AdvrunError, SpecValueError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)
    add_import_argument(p)
    p.add_argument(
        "--only", metavar="GLOB", help="run only runs whose id matches GLOB, e.g. 'cnn@madry@*'"
    )
    p.add_argument("--force", action="store_true", help="retrain runs even if they are done")
    p.add_argument("--device", help="override the spec's device (auto, cpu, cuda, cuda:N)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the results table")
    p.add_argument(
        "--no-report", action="store_true", help="do not write OUTPUT/report.html at the end"
    )
    add_tracking_arguments(p)
    add_baseline_argument(p)
    g = p.add_argument_group("parallel and distributed execution (docs/scaling.md)")
    g.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run up to N runs at once on this machine, each in its own process (CPU cores are "
        "split between them; with GPUs, one GPU each)",
    )
    g.add_argument(
        "--jobs-per-gpu",
        type=int,
        default=1,
        metavar="M",
        help="with --jobs on GPUs: let M jobs share each GPU (default 1)",
    )
    g.add_argument(
        "--launcher",
        choices=("local", "serial", "jobs", "ray"),
        default="local",
        help="local (default: this machine, serial or jobs by --jobs), serial (this process, "
        "one run after another), jobs (--jobs processes) or ray (one Ray task per run)",
    )
    g.add_argument(
        "--address",
        metavar="ADDR",
        help="--launcher ray: the cluster to join (ray.init(address=...)); default a local Ray",
    )
    g.add_argument(
        "--cpus-per-run",
        type=float,
        default=1.0,
        metavar="C",
        help="--launcher ray: CPUs each CPU run's task asks for (default 1; a CUDA run asks for "
        "one GPU)",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="K",
        help="--launcher ray: retries of a task whose worker died; it resumes from its last epoch",
    )


def run(args: argparse.Namespace) -> int:
    loaded, plan, store = load(args)
    from runner import track
    from runner.execute import Options, preflight
    from runner.execute.launchers import LAUNCHERS, LaunchSettings
    from runner.report import experiment
    from runner.report.baseline import load_baseline, remember_baseline

    tracking = track.mlflow_settings(loaded.spec, args.mlflow, args.no_mlflow)
    runs = [r for r in plan.runs if not args.only or fnmatch.fnmatch(r.id, args.only)]
    opts = Options(
        device=args.device or loaded.spec.device,
        allow_import=args.allow_import,
        force=args.force,
        verbose=not args.quiet,
        tracking=track.tracking_options(tracking),  # fails here when the extra is missing
    )
    _check_parallel(args)
    if args.baseline:
        load_baseline(args.baseline)  # a missing or empty baseline fails before any compute
    launcher = LAUNCHERS.load(_launcher_name(args))(
        LaunchSettings(args.jobs, args.jobs_per_gpu, args.address, args.retries, args.cpus_per_run)
    )
    launcher.start(opts)  # torchrun: join the process group
    try:
        try:  # missing data, a bad device or model: fail before writing anything
            preflight(runs, opts)
        except SpecValueError as e:  # a value only the built model can judge, at file:line:col
            raise loaded.located(e.path, e.message) from None
        if launcher.main:  # under torchrun, rank 0 writes and reports
            prepare_output(store.root)  # a read-only or full output directory fails here
            experiment.write_plan(loaded, plan, store)
            remember_baseline(store.root, args.baseline)
        outcomes = launcher.launch(store, opts, runs)
        if not launcher.main:  # the other ranks build no hooks and log nothing
            return 0
        return _finish(args, loaded, plan, store, runs, outcomes, tracking)
    finally:
        launcher.stop()


def _finish(args, loaded, plan, store, runs, outcomes, tracking) -> int:
    """Results, report, the failures, the gate and the tracking catch-up; the exit code."""
    from runner import track
    from runner.execute import results
    from runner.report import experiment

    df = experiment.write_results(plan, store, report=not args.no_report)
    print(results.format_table(df))
    print(f"results: {store.root / 'results.csv'}")
    failed = [o for o in outcomes if o.state == "failed"]
    for o in failed:
        print(f"FAILED {o.run.id}: {o.message}")
    # the robustness gate: exit 3 when a threshold fails; a failed run's exit 1 wins
    gate_code = experiment.gate(loaded.spec, store, [r.id for r in runs])
    if tracking is not None:  # the report and model cards exist now; catch up what is missing
        track.sync(tracking, store.root, verbose=not args.quiet)
    return EXIT_FAILED if failed else gate_code


def _check_parallel(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise AdvrunError(f"--jobs {args.jobs}: give at least 1")
    if args.jobs_per_gpu < 1:
        raise AdvrunError(f"--jobs-per-gpu {args.jobs_per_gpu}: give at least 1")
    if args.cpus_per_run <= 0:
        raise AdvrunError(f"--cpus-per-run {args.cpus_per_run:g}: give a positive number")
    if args.retries < 0:
        raise AdvrunError(f"--retries {args.retries}: give 0 or more")
    if args.launcher != "ray" and args.address:
        raise AdvrunError("--address joins a Ray cluster; add --launcher ray")
    if args.launcher == "serial" and args.jobs > 1:
        raise AdvrunError(f"--launcher serial runs in this process, one run after another; "
                          f"drop --jobs {args.jobs} or use --launcher jobs")  # fmt: skip
    if args.launcher == "ray" and args.jobs > 1:
        raise AdvrunError(
            "--jobs is for the local launcher; with --launcher ray the cluster's resources "
            "decide how many runs go at once"
        )


def _launcher_name(args: argparse.Namespace) -> str:
    """Where the runs go: torchrun's ranks when under torchrun, else Ray with ``--launcher ray``,
    else ``--jobs`` processes on this machine, else this process."""
    from runner import dist

    if dist.under_torchrun():
        if args.jobs > 1 or args.launcher not in ("local", "serial"):
            raise AdvrunError("under torchrun, run without --jobs and --launcher: torchrun's "
                              "ranks are the parallelism")  # fmt: skip
        return "torchrun"
    if args.launcher in ("ray", "serial", "jobs"):
        return args.launcher
    return "jobs" if args.jobs > 1 else "serial"
