"""Read an experiment's output directory: spec, plan, run directories, tuning summary.

Only reads files (no torch): a report can be rendered on a machine without the training stack's
accelerator, from a copied output directory. Missing pieces stay ``None`` and render as
"not run".
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError
from runner.fsio import read_json
from runner.store import Store, StoredRun


@dataclass
class Experiment:
    root: Path
    name: str
    description: str
    spec_text: str | None
    plan: dict[str, Any] | None
    runs: list[StoredRun]  # the plan's runs (``found`` False: not run yet), then audits
    curves_csv: list[dict[str, Any]] | None
    tune: dict[str, Any] | None
    omitted: list[str]  # run directories left out (other evaluation settings)


def _num(text: str) -> Any:
    try:
        v = float(text)
    except ValueError:
        return text
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def numbers(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """CSV rows (strings) with their numbers as numbers."""
    return [{k: _num(v) for k, v in row.items()} for row in rows]


def read_csv_rows(path: Path) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return numbers(list(csv.DictReader(fh)))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise AdvrunError(f"{path}: unreadable ({e}); delete it to recompute") from None


def _spec_name(text: str | None) -> tuple[str | None, str]:
    """name and description of the spec as written, without validating it."""
    if not text:
        return None, ""
    from runner.yamlio import load_yaml

    try:
        data, _ = load_yaml(text, "spec.yaml")
    except AdvrunError:
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    return (
        str(data["name"]) if data.get("name") is not None else None,
        str(data.get("description") or ""),
    )


def load_experiment(root: str | Path) -> Experiment:
    """Read ``root`` (an ``advrun run`` output directory)."""
    root = Path(root)
    if not root.is_dir():
        raise AdvrunError(f"{root}: no such output directory; give the -o of an advrun run")
    runs_dir = root / "runs"
    plan = read_json(root / "plan.json")
    spec_path = root / "spec.yaml"
    spec_text = spec_path.read_text(encoding="utf-8") if spec_path.exists() else None
    if plan is None and not runs_dir.is_dir():
        raise AdvrunError(
            f"{root}: not an advrun output directory (no plan.json, no runs/); "
            "run `advrun run SPEC -o DIR` first"
        )
    store = Store(root)
    runs = [store.read(run_id) for run_id in (plan or {}).get("runs", [])]
    seen = {r.dir.name for r in runs}
    # Directories outside the plan are `advrun eval` audits (shown when evaluated with the same
    # settings as the plan's runs: comparable numbers) or runs of older spec versions (left out).
    hashes = {r.metrics.eval_hash for r in runs if r.metrics}
    omitted = []
    for d in store.run_dirs():
        if d.path.name in seen:
            continue
        r = d.read()
        m = r.metrics
        if m is not None and (plan is None or (m.is_audit and m.eval_hash in hashes)):
            runs.append(r)
        else:
            omitted.append(d.path.name)
    name, description = _spec_name(spec_text)
    if name is None:
        name = next((r.run.experiment for r in runs if r.run is not None), None)
    return Experiment(
        root=root,
        name=name or root.name,
        description=description,
        spec_text=spec_text,
        plan=plan,
        runs=runs,
        curves_csv=read_csv_rows(root / "curves.csv"),
        tune=read_json(root / "tune" / "summary.json"),
        omitted=omitted,
    )


def as_stored(obj: Any) -> Any:
    """A section of a run (``run.threat.to_json()``, a spec model's dump) as run.json holds it:
    plain JSON values, keys in sorted order (descriptions list settings in that order)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def clean_json(obj: Any) -> Any:
    """NaN and infinities as null (JSON has no NaN); tuples as lists; paths as strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return clean_json(obj.item())
    return obj
