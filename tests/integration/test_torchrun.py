"""`torchrun --nproc_per_node=2 -m runner run SPEC`: one run trained with DDP on 2 gloo (CPU)
processes, one set of files, numbers close to a single process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from exec_helpers import advrun, env, run_dirs, trained_once

SPEC = """\
name: ddp
seeds: [0]
device: cpu
data: {dataset: digits}
threat: {norm: linf, eps: 0.1}
models: [{name: cnn, arch: small_cnn}]
recipes:
  - {name: pgd, kind: pgd, epochs: 6, steps: 5, step_size: eps/4, batch_size: 64,
     monitor: {n: 128, steps: 5}}
attacks:
  - {name: fgsm, kind: fgsm}
  - {name: pgd10, kind: pgd, engine: native, steps: 10, step_size: eps/4}
eval: {checklist: false, bootstrap: 100}
"""


def torchrun(*args: str, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "runner", *args]  # fmt: skip
    return subprocess.run(cmd, env=env(**extra), capture_output=True, text=True, timeout=timeout)


def accuracies(out) -> dict[str, float]:
    df = pd.read_csv(out / "results.csv")
    return dict(zip(df["attack"], df["accuracy"], strict=True))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    (root / "spec.yaml").write_text(SPEC)
    r = torchrun("run", str(root / "spec.yaml"), "-o", str(root / "ddp"), "--no-report")
    assert r.returncode == 0, r.stderr[-3000:]
    s = advrun("run", str(root / "spec.yaml"), "-o", str(root / "single"), "--no-report")
    assert s.returncode == 0, s.stderr
    return root / "ddp", root / "single", r


def test_the_run_completes_with_one_set_of_files(both):
    ddp, _, r = both
    (d,) = run_dirs(ddp).values()
    assert trained_once(d, 6)
    log = (d / "log.txt").read_text()
    assert log.count(" training ") == 1 and log.count(" done") == 1  # rank 0 alone writes
    leftovers = [p.name for p in ddp.rglob("*") if p.name.endswith(".tmp") or "stale" in p.name]
    assert not leftovers and not (d / "claim.json").exists()
    assert r.stdout.count("running on 2 ranks (gloo)") == 1  # printed by rank 0 only


def test_world_size_and_per_rank_batch_are_recorded(both):
    ddp, _, _ = both
    (d,) = run_dirs(ddp).values()
    m = json.loads((d / "metrics.json").read_text())["execution"]
    assert m["world_size"] == 2 and m["batch_size"] == 64 and m["per_rank_batch_size"] == 32
    assert m["backend"] == "gloo"
    st = json.loads((d / "status.json").read_text())
    assert st["world_size"] == 2 and st["per_rank_batch_size"] == 32


def test_accuracy_is_within_3_points_of_one_process(both):
    ddp, single, _ = both
    a, b = accuracies(ddp), accuracies(single)
    for key in ("clean", "pgd10", "worst_case"):
        assert abs(a[key] - b[key]) <= 0.03, (key, a[key], b[key])


@pytest.mark.slow
def test_a_killed_torchrun_resumes_under_torchrun_or_alone(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC.replace("epochs: 6", "epochs: 3"))
    for resume_alone in (False, True):
        out = tmp_path / f"out{int(resume_alone)}"
        args = ("run", str(tmp_path / "spec.yaml"), "-o", str(out), "--no-report")
        k = torchrun(*args, ADVRUN_FAULT=f"epoch:2@{tmp_path / f'm{int(resume_alone)}'}")
        assert k.returncode != 0  # rank 0 killed itself: torchrun ends the group
        (d,) = run_dirs(out).values()
        assert len(pd.read_csv(d / "epochs.csv")) == 2
        again = advrun(*args) if resume_alone else torchrun(*args)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "resumed at epoch 2" in (d / "log.txt").read_text()
        assert trained_once(d, 3)


def test_engine_art_is_refused_under_torchrun(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("kind: pgd, epochs", "kind: pgd, engine: art, epochs"))
    r = advrun("validate", str(spec), WORLD_SIZE="2")
    assert r.returncode == 2
    assert f"{spec}:8:" in r.stderr and "single-process" in r.stderr
    assert advrun("validate", str(spec)).returncode == 0  # fine without torchrun
