"""Experiment tracking (MLflow): the settings (:mod:`runner.track.settings`), the catch-up
:func:`sync`; the engine is :mod:`runner.track.mlflow`.

Nothing here imports mlflow, so commands can resolve and check the settings before any training.
The settings are plain data (``Options.tracking``) so hooks can be rebuilt in any process.

Where the tracking URI comes from, first match wins: ``--mlflow URI`` on the command line, the
spec's ``tracking.mlflow.uri``, the ``MLFLOW_TRACKING_URI`` environment variable, MLflow's default
(``sqlite:///mlflow.db`` in the working directory). Tracking is on when the spec has a
``tracking.mlflow`` block or ``--mlflow`` is given (``--no-mlflow`` turns it off); the environment
variable alone only supplies the URI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.track.settings import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_URI,
    INSTALL_HINT,
    mlflow_settings,
    redact,
    require_mlflow,
    resolve_uri,
    tracking_options,
)

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URI",
    "INSTALL_HINT",
    "mlflow_settings",
    "redact",
    "require_mlflow",
    "resolve_uri",
    "sync",
    "tracking_options",
]


def sync(settings: dict[str, Any], out: str | Path, verbose: bool = True) -> dict[str, Any]:
    """Log what an output directory's MLflow runs lack; print one line saying what happened."""
    from runner.fsio import read_json, write_json
    from runner.track.mlflow import STATE_FILE, sync_output

    state_path = Path(out) / STATE_FILE  # what `advrun track OUT` uses without --mlflow
    state = read_json(state_path) or {}
    last = {**settings, "uri": redact(settings["uri"])}
    if state.get("last") != last:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(state_path, {**state, "last": last})
    summary = sync_output(settings, Path(out))
    counts = summary["counts"]
    done = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no runs"
    where = f"{summary['uri']} (experiment {summary['experiment']})"
    if summary["error"]:
        print(
            f"mlflow: {where}: {done}; run `advrun track {out}` when the server is back",
            file=sys.stderr,
        )
    elif verbose:
        print(f"mlflow: {where}: {done} (parent run {summary['parent_run_id']})")
    return summary
