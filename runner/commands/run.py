"""``advrun run SPEC [KEY=VALUE ...]``: train, attack and store every run; skip what is done."""

from __future__ import annotations

import argparse
import fnmatch

from runner.commands.common import (
    add_import_argument,
    add_spec_arguments,
    load,
    prepare_output,
)
from runner.errors import EXIT_FAILED


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


def run(args: argparse.Namespace) -> int:
    loaded, plan, store = load(args)
    from runner.execute import Options, execute_plan, preflight, results
    from runner.execute import finish as experiment

    runs = [r for r in plan.runs if not args.only or fnmatch.fnmatch(r.id, args.only)]
    opts = Options(
        device=args.device or loaded.spec.device,
        allow_import=args.allow_import,
        force=args.force,
        verbose=not args.quiet,
    )
    preflight(runs, opts)  # missing data, a bad device or model: fail before writing anything
    prepare_output(store.root)  # a read-only or full output directory fails before any write
    experiment.write_plan(loaded, plan, store)
    outcomes = execute_plan(store, opts, runs)
    df = experiment.write_results(plan, store, report=not args.no_report)
    print(results.format_table(df))
    print(f"results: {store.root / 'results.csv'}")
    failed = [o for o in outcomes if o.state == "failed"]
    for o in failed:
        print(f"FAILED {o.run.id}: {o.message}")
    # the robustness gate: exit 3 when a threshold fails; a failed run's exit 1 wins
    gate_code = experiment.gate(loaded.spec, store, [r.id for r in runs])
    return EXIT_FAILED if failed else gate_code
