"""Read an experiment's output directory: spec, plan, run directories, tuning summary.

Only reads files (no torch): a report can be rendered on a machine without the training stack's
accelerator, from a copied output directory. Missing pieces stay ``None`` and render as
"not run".
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError
from runner.fsio import read_json


@dataclass
class RunData:
    """Everything stored for one run; any file may be missing."""

    id: str
    dir: Path | None
    config: dict[str, Any] = field(default_factory=dict)  # run.json
    metrics: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    exports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.metrics is not None and self.status.get("state") == "done":
            return "done"
        return self.status.get("state") or ("not run" if self.dir is None else "unknown")

    def get(self, key: str, default: Any = None) -> Any:
        """A value from metrics.json, else run.json."""
        if self.metrics and key in self.metrics:
            return self.metrics[key]
        return self.config.get(key, default)


@dataclass
class Experiment:
    root: Path
    name: str
    description: str
    spec_text: str | None
    plan: dict[str, Any] | None
    runs: list[RunData]
    curves_csv: list[dict[str, Any]] | None
    tune: dict[str, Any] | None
    omitted: list[str]  # run directories left out (other evaluation settings)


def _num(text: str) -> Any:
    try:
        v = float(text)
    except ValueError:
        return text
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def read_csv_rows(path: Path) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise AdvrunError(f"{path}: unreadable ({e}); delete it to recompute") from None


def read_run(run_id: str, d: Path | None) -> RunData:
    if d is None or not d.is_dir():
        return RunData(id=run_id, dir=None)
    exports = read_json(d / "exports.json") or {}
    return RunData(
        id=run_id,
        dir=d,
        config=read_json(d / "run.json") or {},
        metrics=read_json(d / "metrics.json"),
        status=read_json(d / "status.json") or {},
        epochs=read_csv_rows(d / "epochs.csv") or [],
        exports=list(exports.get("adversarial_exports", [])),
    )


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
    from runner.compile import run_dirname

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
    runs: list[RunData] = []
    seen: set[str] = set()
    for run_id in (plan or {}).get("runs", []):
        d = runs_dir / run_dirname(run_id)
        runs.append(read_run(run_id, d if d.is_dir() else None))
        seen.add(d.name)
    # Directories outside the plan are `advrun eval` audits (shown when evaluated with the same
    # settings as the plan's runs: comparable numbers) or runs of older spec versions (left out).
    hashes = {r.metrics.get("eval_hash") for r in runs if r.metrics}
    omitted = []
    if runs_dir.is_dir():
        for d in sorted(p for p in runs_dir.iterdir() if p.is_dir() and p.name not in seen):
            r = read_run(d.name, d)
            r.id = str(r.get("run_id") or r.config.get("id") or d.name)
            audit = r.metrics is not None and r.metrics.get("kind") == "audit"
            if r.metrics is not None and (
                plan is None or (audit and r.metrics.get("eval_hash") in hashes)
            ):
                runs.append(r)
            else:
                omitted.append(d.name)
    name, description = _spec_name(spec_text)
    if name is None:
        name = next((str(r.config["experiment"]) for r in runs if "experiment" in r.config), None)
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
