"""One tiny real experiment shared by the report, gate and export tests (built once a session).

Two recipes x two seeds of a small MLP on the embedded digits, 2 epochs, 80 test examples, a
robustness curve and the evaluation checklist: every section the report can fill from a run.
The model name carries a ``<script>`` tag so escaping is checked on real output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from runner.cli import main

EVIL = "<script>alert(1)</script>"

SPEC = f"""\
name: tiny
description: "Report test: <b>bold</b> & friends"
seeds: [0, 1]
data: {{dataset: digits, limit: 400}}
threat: {{norm: linf, eps: 0.1, pixel_range: [0, 1]}}
models:
  - {{name: "{EVIL}", arch: mlp, kwargs: {{hidden: [32]}}}}
recipes:
  - {{name: standard, kind: standard, epochs: 2, batch_size: 64,
     optimizer: {{name: adam, lr: 0.01}}, monitor: {{n: 40, steps: 3}}}}
  - {{name: madry, kind: pgd, epochs: 2, batch_size: 64, steps: 3, step_size: eps/2,
     optimizer: {{name: adam, lr: 0.01}}, monitor: {{n: 40, steps: 3}}}}
attacks:
  - {{name: fgsm, kind: fgsm}}
  - {{name: pgd, kind: pgd, steps: 5, step_size: eps/4, engine: native}}
eval: {{n: 80, bootstrap: 200, eps_curve: [0, 0.05, 0.1, 0.2], curve_attacks: [pgd],
       checklist_n: 16}}
"""


def tiny_experiment(tmp_path_factory) -> tuple[Path, Path]:
    """(spec, output dir) of the shared experiment; trained on first use in the session."""
    root = tmp_path_factory.getbasetemp() / "report-tiny"
    spec, out = root / "spec.yaml", root / "out"
    if not (out / "report.html").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        spec.write_text(SPEC)
        assert main(["run", str(spec), "-o", str(out), "-q"]) == 0
    return spec, out


def copy_experiment(tmp_path_factory, dest: Path) -> tuple[Path, Path]:
    """A private copy (tests that write into the output directory must not disturb others)."""
    spec, out = tiny_experiment(tmp_path_factory)
    shutil.copytree(out, dest / "out")
    shutil.copy(spec, dest / "spec.yaml")
    return dest / "spec.yaml", dest / "out"
