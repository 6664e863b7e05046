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
