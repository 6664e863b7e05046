"""Small tune specs on digits for the tuning tests (seconds per trial on 2 CPU cores)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HEAD = """\
name: {name}
seeds: [0]
device: cpu
data: {{dataset: digits, limit: 320}}
threat: {{norm: linf, eps: 0.1, pixel_range: [0, 1]}}
models:
  - {{name: cnn, arch: small_cnn}}
recipes:
  - name: madry
    kind: pgd
    epochs: {epochs}
    eps: 0.1
    step_size: 0.04
    steps: 3
    batch_size: 64
    optimizer: {{lr: 3e-3}}
    monitor: {{n: 64, steps: 3}}
attacks:
  - {{name: fgsm, kind: fgsm, engine: native}}
  - {{name: pgd5, kind: pgd, steps: 5, step_size: 0.03, engine: native}}
eval: {{n: 100, bootstrap: 0, checklist: false}}
"""

LR_SPACE = """\
tune:
  target: {model: cnn, recipe: madry}
  space:
    optimizer.lr: {float: [3e-4, 1e-2], log: true}
"""


def spec_text(name: str, tune: str, epochs: int = 2) -> str:
    return HEAD.format(name=name, epochs=epochs) + tune


def write(tmp: Path, name: str, tune: str, epochs: int = 2) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(spec_text(name, tune, epochs))
    return p


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "tune" / "summary.json").read_text())


def finished(s: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in s["trials"] if t["state"] in ("complete", "pruned")]


def trainings(run_dir: Path) -> int:
    """How often a run was trained from scratch (a resume logs 'resumed at epoch')."""
    log = (run_dir / "log.txt").read_text()
    return log.count(" training ") - log.count("resumed at epoch")
