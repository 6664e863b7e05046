"""``advrun track OUT``: log to MLflow whatever an output directory's runs have not logged yet.

For runs whose tracking server was down or slow (status.json ``tracking.mlflow.state: pending``),
for an output directory made without tracking, or to copy an experiment to another server. What is
already logged is left alone, so running it again logs nothing new.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.errors import EXIT_FAILED, AdvrunError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", metavar="OUT", help="an output directory of advrun run/eval/tune")
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="tracking URI (default: the one OUT was last tracked to, else the stored spec's "
        "tracking.mlflow.uri, else MLFLOW_TRACKING_URI)",
    )
    p.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default: as before)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def _settings(args: argparse.Namespace, out: Path) -> dict:
    from runner import track
    from runner.fsio import read_json
    from runner.track.mlflow import STATE_FILE

    last = (read_json(out / STATE_FILE) or {}).get("last")
    settings = None
    spec_file = out / "spec.yaml"
    if spec_file.exists():
        from runner.spec import load_spec

        overrides = list((read_json(out / "plan.json") or {}).get("overrides", []))
        try:
            spec = load_spec(spec_file, overrides).spec
        except AdvrunError:
            spec = None
        if spec is not None:
            settings = track.mlflow_settings(spec, args.mlflow or (last or {}).get("uri"))
    if settings is None and (args.mlflow or last):
        settings = {**(last or {}), "experiment": (last or {}).get("experiment") or out.name}
        if args.mlflow:
            settings["uri"] = track.resolve_uri(args.mlflow)
    if settings is None:
        raise AdvrunError(
            f"{out}: no tracking configured (no tracking.mlflow block in its spec.yaml, never "
            "tracked before); pass --mlflow URI"
        )
    if args.experiment:
        settings["experiment"] = args.experiment
    if "***" in settings["uri"]:
        raise AdvrunError(
            f"the tracking URI of {out} had a password, which advrun does not store; pass it again "
            "with --mlflow URI (or give the credentials in MLFLOW_TRACKING_USERNAME/PASSWORD)"
        )
    return settings


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if not out.is_dir() or not ((out / "runs").is_dir() or (out / "plan.json").exists()):
        raise AdvrunError(f"{out}: not an advrun output directory (no runs/); give the -o of a run")
    from runner import track

    settings = _settings(args, out)
    track.require_mlflow()
    summary = track.sync(settings, out, verbose=not args.quiet)
    return EXIT_FAILED if summary["error"] else 0
