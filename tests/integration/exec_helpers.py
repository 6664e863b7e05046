"""Shared pieces of the execution tests: small deterministic specs, the real CLI in a subprocess,
and file-by-file comparison of two output directories."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]

# 4 runs (2 recipes x 2 seeds), seconds each; deterministic, so every process gives the same bits
SPEC4 = """\
name: four
seeds: [0, 1]
device: cpu
deterministic: true
data: {dataset: digits, limit: 300}
threat: {norm: linf, eps: 0.1}
models: [{name: mlp, arch: mlp, kwargs: {hidden: [32]}}]
recipes:
  - {name: std, kind: standard, epochs: 3, optimizer: {lr: 3e-3}, monitor: {n: 64, steps: 3}}
  - {name: pgd, kind: pgd, epochs: 3, steps: 3, step_size: eps/2, optimizer: {lr: 3e-3},
     monitor: {n: 64, steps: 3}}
attacks:
  - {name: fgsm, kind: fgsm}
  - {name: pgd5, kind: pgd, engine: native, steps: 5, step_size: eps/4}
eval: {n: 100, bootstrap: 50, checklist: false}
"""

TIMING = ("train_seconds", "eval_seconds")  # wall times: the only numbers allowed to differ


def threads_for_tests() -> int:
    """torch threads for the tests and their CLI subprocesses: ADVRUN_TEST_THREADS, else the
    caller's OMP_NUM_THREADS, else 1 (the tiny digits models gain nothing from more, and on busy
    shared cores two threads wait on each other). Passing the caller's count on lets
    `OMP_NUM_THREADS=2 make test` exercise other reduction orders, as another CPU would; a test
    that needs bitwise equality gets it from `deterministic: true` (one thread in the run itself,
    whatever this says) or compares two processes with the same count."""
    raw = os.environ.get("ADVRUN_TEST_THREADS") or os.environ.get("OMP_NUM_THREADS") or "1"
    try:
        return max(1, int(raw))
    except ValueError:
        return 1


def env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: the tests' thread count, fast heartbeats, this
    checkout."""
    e = dict(os.environ)
    e.pop("ADVRUN_FAULT", None)
    e.update(
        OMP_NUM_THREADS=str(threads_for_tests()), ADVRUN_HEARTBEAT_S="0.2", PYTHONPATH=str(ROOT)
    )
    e.update(extra)
    return e


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "runner", *args]


def advrun(*args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args), env=env(**extra), capture_output=True, text=True, timeout=timeout
    )


def start(*args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        command(*args), env=env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def run_dirs(out: Path) -> dict[str, Path]:
    return {d.name: d for d in sorted((out / "runs").iterdir()) if d.is_dir()}


def assert_same_outputs(a: Path, b: Path) -> None:
    """results.csv equal but for wall times; every run's epochs and weights bitwise equal."""
    ra, rb = pd.read_csv(a / "results.csv"), pd.read_csv(b / "results.csv")
    keep = [c for c in ra.columns if c not in TIMING]
    assert list(ra.columns) == list(rb.columns)
    pd.testing.assert_frame_equal(ra[keep], rb[keep], check_exact=True)
    da, db = run_dirs(a), run_dirs(b)
    assert list(da) == list(db)
    for name, d in da.items():
        ea, eb = pd.read_csv(d / "epochs.csv"), pd.read_csv(db[name] / "epochs.csv")
        pd.testing.assert_frame_equal(ea.drop(columns="seconds"), eb.drop(columns="seconds"))
        for ck in ("last.pt", "best.pt"):
            wa = torch.load(d / "checkpoints" / ck, weights_only=True)
            wb = torch.load(db[name] / "checkpoints" / ck, weights_only=True)
            assert wa.keys() == wb.keys()
            assert all(torch.equal(wa[k], wb[k]) for k in wa), (name, ck)


def epoch_lines(run_dir: Path) -> Counter:
    """How often each epoch was trained, from the run's log ('epoch k/N loss ...')."""
    text = (run_dir / "log.txt").read_text()
    return Counter(int(m) for m in re.findall(r" epoch (\d+)/\d+ loss", text))


def trained_once(run_dir: Path, epochs: int) -> bool:
    return (
        epoch_lines(run_dir) == Counter(range(1, epochs + 1))
        and len(pd.read_csv(run_dir / "epochs.csv")) == epochs
    )
