"""The live summary of an execution: runs done / running / left, elapsed, time left."""

from __future__ import annotations

import io

from spec_base import BASE

from runner.compile import compile_spec
from runner.execute.progress import Progress
from runner.spec import load_spec
from runner.store import RunMetrics


def test_summary_counts_runs_and_estimates_time_left(write_spec, monkeypatch):
    runs = compile_spec(
        load_spec(write_spec(BASE.replace("seeds: [0]", "seeds: [0, 1]"))).spec
    ).runs
    clock = iter([0.0, 0.0, 10.0, 10.0, 20.0, 20.0, 20.0, 20.0])
    monkeypatch.setattr("runner.execute.progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    p = Progress(runs, verbose=True, stream=out)
    p.started(runs[0], "new -> running")
    clean = {"attack": "clean", "kind": "clean", "norm": "linf", "eps": 0.0, "accuracy": 0.9,
             "n": 10, "ci_low": 0.8, "ci_high": 1.0}  # fmt: skip
    m = RunMetrics(run_id=runs[0].id, slug=runs[0].slug, eval_hash="e", model="cnn",
                   arch="mlp", recipe="std", kind="standard", results=[clean],
                   train_seconds=1.0)  # fmt: skip
    p.finished(runs[0], m)
    p.started(runs[1], "new -> running")
    text = p.summary_text()
    assert text.startswith(f"runs: 1 done, 1 running, {len(runs) - 2} left; 0:20 elapsed")
    assert "left" in text.split(";")[1]  # an estimate once one run has finished
    lines = out.getvalue().splitlines()
    assert lines[0] == f"[1/{len(runs)}] {runs[0].slug}: new -> running"
    assert lines[1] == f"[1/{len(runs)}] {runs[0].slug}: clean 0.900 (1.0s train)"


def test_quiet_prints_nothing_but_failures(write_spec, capsys):
    runs = compile_spec(load_spec(write_spec()).spec).runs
    out = io.StringIO()
    p = Progress(runs, verbose=False, stream=out)
    p.started(runs[0], "x")
    p.failed(runs[0], "boom")
    assert out.getvalue() == "" and "FAILED: boom" in capsys.readouterr().err
