"""Arguments and steps shared by commands that read a spec."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from runner.compile import Plan, compile_spec
from runner.errors import AdvrunError
from runner.spec import LoadedSpec, load_spec
from runner.store import Store, default_output_dir


def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="the spec YAML file")
    p.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override spec values, e.g. recipes.0.epochs=3 seeds=[0]",
    )
    p.add_argument(
        "-o", "--output", help="output directory (default: the spec's output.dir or reports/<name>)"
    )


def add_import_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="PATTERN",
        help="allow user model factories from modules matching PATTERN (e.g. 'mypkg.*')",
    )


def add_baseline_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--baseline",
        metavar="DIR",
        help="gate against the last accepted release (its output dir, run dir or model_card.json):"
        " exit 3 when clean or worst-case accuracy drops by more than gate.max_drop (default "
        "0.01 clean, 0.02 worst case) beyond noise (paired McNemar test on the same examples)",
    )


def add_tracking_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="log every run to MLflow at URI (http://host:port, sqlite:///file.db, file:///dir); "
        "overrides the spec's tracking.mlflow.uri and MLFLOW_TRACKING_URI; needs advrun[mlflow]",
    )
    p.add_argument(
        "--no-mlflow", action="store_true", help="do not log to MLflow even if the spec says so"
    )


def load(args: argparse.Namespace) -> tuple[LoadedSpec, Plan, Store]:
    """The validated spec, its plan and its store.

    The output directory is ``-o`` (the user's explicit choice: anywhere), else the spec's
    ``output.dir`` (validated to stay inside the working directory), else ``reports/<name>``.
    """
    loaded = load_spec(args.spec, args.overrides)
    plan = compile_spec(loaded.spec)
    out = args.output or loaded.spec.output.dir or default_output_dir(loaded.spec.name)
    check_output_path(Path(out))
    return loaded, plan, Store(Path(out))


def check_output_path(root: Path) -> None:
    """Refuse an output directory that is a file, or sits under one (a stat, no write)."""
    hint = "choose another -o (or output.dir)"
    if root.exists() and not root.is_dir():
        raise AdvrunError(f"output directory {root} is a file, not a folder; {hint}")
    for parent in root.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AdvrunError(
                    f"output directory {root}: {parent} is a file, not a folder; {hint}"
                )
            break


def prepare_output(root: Path) -> None:
    """Create the output directory and prove it is writable before the first result is written
    (a temporary file, removed at once: a read-only or full disk fails here, not mid-run)."""
    from runner.fsio import write_error

    check_output_path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root, prefix=".advrun-probe-"):
            pass
    except OSError as e:
        raise write_error(root, e) from e
