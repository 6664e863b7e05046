"""The run store: one directory per run under ``<output>/runs/``, written atomically.

Layout of a run directory::

    run.json          the fully resolved run (what was asked)
    status.json       state (running/trained/done/failed), times, diagnosis
    checkpoints/      last.pt, best.pt (state_dicts), state.pt (resume point: optimizer, RNG, epoch)
    epochs.csv        per-epoch guardrail table
    metrics.json      clean and per-attack accuracy, cost, eval_hash
    examples.parquet  per-example outcomes
    log.txt           what happened

A run is *done* when metrics.json matches the current evaluation settings; *stale* when it is
trained but its evaluation is out of date (re-evaluated without retraining); *partial* when it was
interrupted (resumed from its last epoch); *failed* when it stopped with a diagnosis.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path
from typing import Any

from runner.compile import Plan, Run, run_dirname
from runner.fsio import contained, read_json, write_json


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_epochs(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's epochs.csv as written (strings); [] before its first epoch."""
    try:
        with open(Path(run_dir) / "epochs.csv", newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def default_output_dir(spec_name: str) -> Path:
    return Path("reports") / re.sub(r"[^A-Za-z0-9._-]", "_", spec_name)


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run: Run | str) -> Path:
        run_id = run if isinstance(run, str) else run.id
        return contained(self.runs_dir, run_dirname(run_id))

    def status(self, run: Run) -> str:
        d = self.run_dir(run)
        if not (d / "status.json").exists() and not (d / "checkpoints").exists():
            return "new"  # nothing yet (a directory holding only a fresh claim)
        st = read_json(d / "status.json") or {}
        metrics = read_json(d / "metrics.json")
        if st.get("state") == "done" and metrics and metrics.get("eval_hash") == run.eval_hash:
            return "done"
        if st.get("state") == "failed":
            return "failed"
        if (d / "checkpoints" / "last.pt").exists() and st.get("state") in ("trained", "done"):
            return "stale"
        return "partial"

    def set_status(self, run: Run, state: str, **info: Any) -> None:
        path = self.run_dir(run) / "status.json"
        st = read_json(path) or {}
        st.update(info, state=state, updated=now())
        write_json(path, st)

    def statuses(self, plan: Plan) -> dict[str, str]:
        return {r.id: self.status(r) for r in plan.runs}
