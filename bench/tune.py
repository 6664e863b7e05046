"""Pruning pays: a 20-trial Optuna study with pruning against the same study without it.

Madry PGD training of the small CNN on digits (CPU), searching the training eps, the step size
(as a fraction of eps), the PGD steps and the learning rate; the objective is PGD-20 robust
accuracy at the fixed threat model. Both studies run in this process, one after the other, with
the same sampler seed. The target: pruning takes at most half the time and its best objective
is within 2 points of the unpruned study's.

    .venv/bin/python bench/tune.py [--trials 20] [--epochs 12] [--pruner median|hyperband]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from runner.cli import main as advrun

SPEC = """\
name: bench-tune
seeds: [0]
device: {device}
data: {{dataset: digits, limit: {limit}}}
threat: {{norm: linf, eps: 0.1, pixel_range: [0, 1]}}
models:
  - {{name: cnn, arch: small_cnn}}
recipes:
  - name: madry
    kind: pgd
    epochs: {epochs}
    eps: 0.1
    step_size: eps/4
    steps: 5
    batch_size: 64
    monitor: {{n: 128, steps: 5}}
attacks:
  - {{name: pgd20, kind: pgd, steps: 20, step_size: eps/4, engine: native}}
eval: {{bootstrap: 0, checklist: false}}
tune:
  target: {{model: cnn, recipe: madry}}
  space:
    eps: {{float: [0.05, 0.2]}}
    step_size: {{categorical: [eps/8, eps/4, eps/2]}}
    steps: {{int: [8, 12]}}
    optimizer.lr: {{float: [1e-4, 2e-2], log: true}}
  objective: {{maximize: robust_accuracy, attack: pgd20}}
  trials: {trials}
  pruner: {pruner}
  pruner_startup_trials: 3
  pruner_warmup_epochs: 1
  seed: 0
"""


def study(root: Path, pruner: str, args: argparse.Namespace) -> tuple[float, dict]:
    d = root / pruner
    d.mkdir(parents=True)
    spec = d / "spec.yaml"
    spec.write_text(
        SPEC.format(
            device=args.device, limit=args.limit, epochs=args.epochs, trials=args.trials,
            pruner=pruner,
        )
    )  # fmt: skip
    t0 = time.perf_counter()
    rc = advrun(["tune", str(spec), "-o", str(d / "out"), "-q"])
    seconds = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"advrun tune failed ({pruner}): exit {rc}")
    return seconds, json.loads((d / "out" / "tune" / "summary.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--limit", type=int, default=800, help="training examples")
    p.add_argument("--pruner", default="median", choices=["median", "hyperband"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="/tmp/advrun-bench-tune")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady timings)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)  # fresh studies: this folder is the bench's own
    rows = {}
    for pruner in (args.pruner, "none"):
        seconds, s = study(root, pruner, args)
        epochs = sum(len(t["intermediate"]) for t in s["trials"])
        rows[pruner] = (seconds, s["best"]["values"][0], s["counts"], epochs)
        print(
            f"pruner {pruner:9s} {seconds:7.1f} s  best robust_accuracy@pgd20 "
            f"{rows[pruner][1]:.4f}  trials {s['counts']}  epochs trained {epochs}",
            flush=True,
        )
    (t_p, best_p, _, _), (t_n, best_n, _, _) = rows[args.pruner], rows["none"]
    ratio, gap = t_p / t_n, (best_n - best_p) * 100
    print(f"time with pruning / without: {ratio:.2f} (target <= 0.50)")
    print(f"best objective, without minus with pruning: {gap:+.1f} points (target <= 2)")
    ok = ratio <= 0.5 and gap <= 2.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
