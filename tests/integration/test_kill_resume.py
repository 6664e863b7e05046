"""SIGKILL at every point of a run, then a rerun: the results equal an uninterrupted run's,
bitwise on CPU with deterministic: true. The kill is triggered by ADVRUN_FAULT (the process kills
itself when it reaches the named point), never by a sleep that depends on the machine's speed."""

from __future__ import annotations

import signal

import pandas as pd
import pytest
from exec_helpers import advrun, assert_same_outputs, run_dirs

SPEC = """\
name: kills
seeds: [0]
device: cpu
deterministic: true
data: {dataset: digits, limit: 300}
threat: {norm: linf, eps: 0.1}
models: [{name: mlp, arch: mlp, kwargs: {hidden: [32]}}]
recipes:
  - {name: std, kind: standard, epochs: 2, optimizer: {lr: 3e-3}, monitor: {n: 64, steps: 3}}
  - {name: pgd, kind: pgd, epochs: 2, steps: 3, step_size: eps/2, optimizer: {lr: 3e-3},
     monitor: {n: 64, steps: 3}}
attacks:
  - {name: fgsm, kind: fgsm}
  - {name: pgd5, kind: pgd, steps: 5, step_size: eps/4}
  - {name: apgd, kind: apgd, steps: 10}
eval: {n: 100, bootstrap: 50, eps_curve: [0, eps/2, eps], checklist_n: 32}
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    (root / "spec.yaml").write_text(SPEC)
    r = advrun("run", str(root / "spec.yaml"), "-o", str(root / "out"), "-q")
    assert r.returncode == 0, r.stderr
    return root / "out"


def _metrics(out):
    return {n: pd.read_json(d / "metrics.json", typ="series") for n, d in run_dirs(out).items()}


POINTS = [
    pytest.param("epoch:1", id="during-training"),
    pytest.param("run_done", id="between-runs", marks=pytest.mark.slow),
    pytest.param("attack:pgd5", id="during-the-attack-suite"),
    pytest.param("curves", id="during-curves", marks=pytest.mark.slow),
    pytest.param("checklist", id="during-checklist", marks=pytest.mark.slow),
    pytest.param("results", id="while-writing-results", marks=pytest.mark.slow),
    pytest.param("report", id="while-writing-the-report", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_any_point_the_rerun_equals_an_uninterrupted_run(tmp_path, reference, point):
    (tmp_path / "spec.yaml").write_text(SPEC)
    out = tmp_path / "out"
    fired = tmp_path / "fired.log"
    args = ("run", str(tmp_path / "spec.yaml"), "-o", str(out), "-q")
    killed = advrun(*args, ADVRUN_FAULT=point, ADVRUN_FAULT_LOG=str(fired))
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
    assert fired.read_text().split() == [point]
    again = advrun(*args)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert_same_outputs(out, reference)
    for name in ("curves.csv", "results.json"):
        assert (out / name).exists()
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "curves.csv"), pd.read_csv(reference / "curves.csv")
    )
    ours, theirs = _metrics(out), _metrics(reference)
    for name in ours:  # checklists and curves too: every number of the evaluation
        for key in ("checklist", "curves", "best_epoch", "checkpoint"):
            assert ours[name][key] == theirs[name][key], (name, key)
    assert (out / "report.html").read_text().count("<html") == 1
    if point.startswith("attack:"):  # the suite resumed: finished attacks were not redone
        first = next(d for n, d in run_dirs(out).items() if "@std@" in n)  # the plan's first
        log = (first / "log.txt").read_text()
        assert "resumed the attack suite after 1 finished attack(s)" in log
        assert log.count("fgsm (cascade)") == 1 and log.count("pgd5 (cascade)") == 2
    for d in run_dirs(out).values():
        assert not (d / "eval").exists()  # the evaluation state is removed once done


# Per-batch hooks in the resume point (issue 22): AWP's proxy optimizer, the EMA average and its
# step count, Free-AT's carried perturbation. Every run is killed after its first epoch (one
# marker per attempt: each attempt kills the first run that reaches epoch 1), then resumed.
HOOKED = """\
name: hooked
seeds: [0]
device: cpu
deterministic: true
data: {dataset: digits, limit: 300}
threat: {norm: linf, eps: 0.1}
models: [{name: mlp, arch: mlp, kwargs: {hidden: [32]}}]
recipes:
  - {name: pgd-awp-ema, kind: pgd, epochs: 3, steps: 2, step_size: eps/2, optimizer: {lr: 3e-3},
     awp: {gamma: 0.01}, ema: {decay: 0.9}, monitor: {n: 64, steps: 3}}
  - {name: trades-awp, kind: trades, epochs: 3, steps: 2, step_size: eps/2,
     optimizer: {name: sgd, lr: 0.05, weight_decay: 5e-4}, awp: {warmup_epochs: 1},
     monitor: {n: 64, steps: 3}}
  - {name: free-ema, kind: free, epochs: 6, m: 2, optimizer: {lr: 3e-3},
     ema: {decay: 0.95, warmup: 0.5, buffers: average}, monitor: {n: 64, steps: 3}}
attacks:
  - {name: pgd5, kind: pgd, steps: 5, step_size: eps/4}
eval: {n: 100, bootstrap: 50, checklist: false}
"""


def test_killed_runs_with_awp_ema_and_free_resume_bitwise(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(HOOKED)
    ref = advrun("run", str(spec), "-o", str(tmp_path / "ref"), "-q", "--no-report")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "out"
    args = ("run", str(spec), "-o", str(out), "-q", "--no-report")
    for attempt in range(3):  # one kill per run, each after its first epoch
        marker = tmp_path / f"fired-{attempt}"
        killed = advrun(*args, ADVRUN_FAULT=f"epoch:1@{marker}")
        assert killed.returncode == -signal.SIGKILL, (attempt, killed.stderr)
    again = advrun(*args)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert_same_outputs(out, tmp_path / "ref")  # epochs, results, last.pt and best.pt bitwise
    for d in run_dirs(out).values():
        assert "resumed at epoch 1" in (d / "log.txt").read_text(), d.name


GAP_GUARDED = """\
name: gapkill
seeds: [0]
device: cpu
deterministic: true
data: {dataset: digits, limit: 300}
threat: {norm: linf, eps: 0.3}
models: [{name: mlp, arch: mlp, kwargs: {hidden: [32]}}]
recipes:
  - {name: fgsm-rs, kind: fgsm_rs, epochs: 3, optimizer: {lr: 3e-3}, monitor: {n: 64, steps: 3}}
  - {name: fgsm-zoo, kind: fgsm_augment, ratio: 1.0, overfit_drop: 0.2, overfit_gap: 0.02,
     epochs: 3, optimizer: {lr: 3e-3}, monitor: {n: 64, steps: 3}}
attacks:
  - {name: pgd5, kind: pgd, steps: 5, step_size: eps/4}
eval: {n: 100, bootstrap: 50, checklist: false}
"""


def test_killed_single_step_runs_with_the_fgsm_monitor_resume_bitwise(tmp_path):
    """The guard's FGSM monitor (val_fgsm) and its stop decision survive a kill: the rerun's
    epochs, results and checkpoints equal an uninterrupted run's."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(GAP_GUARDED)
    ref = advrun("run", str(spec), "-o", str(tmp_path / "ref"), "-q", "--no-report")
    assert ref.returncode == 0, ref.stderr
    ref_epochs = {n: (d / "epochs.csv").read_text() for n, d in run_dirs(tmp_path / "ref").items()}
    assert all("val_fgsm" in text.splitlines()[0] for text in ref_epochs.values()), ref_epochs
    out = tmp_path / "out"
    args = ("run", str(spec), "-o", str(out), "-q", "--no-report")
    for attempt in range(2):  # one kill per run, each after its first epoch
        marker = tmp_path / f"fired-{attempt}"
        killed = advrun(*args, ADVRUN_FAULT=f"epoch:1@{marker}")
        assert killed.returncode == -signal.SIGKILL, (attempt, killed.stderr)
    again = advrun(*args)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert_same_outputs(out, tmp_path / "ref")
