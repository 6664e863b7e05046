"""`advrun run --jobs N`: the same ids, files and numbers as a serial run; a dead job fails its
run (resumable) while the others go on."""

from __future__ import annotations

import json

import pytest
from exec_helpers import SPEC4, advrun, assert_same_outputs, run_dirs, trained_once

from runner.execute.resources import Slot, slots, threads_per_job


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    (root / "spec.yaml").write_text(SPEC4)
    done = {}
    for jobs, launcher in ((1, "serial"), (2, "local")):  # serial by name, jobs by --jobs
        r = advrun("run", str(root / "spec.yaml"), "-o", str(root / f"j{jobs}"), "--jobs",
                   str(jobs), "--launcher", launcher, "--no-report")  # fmt: skip
        assert r.returncode == 0, r.stderr
        done[jobs] = (root / f"j{jobs}", r.stdout)
    return done


def test_jobs_2_gives_the_files_and_numbers_of_jobs_1(outputs):
    (one, _), (two, _) = outputs[1], outputs[2]
    assert list(run_dirs(one)) == list(run_dirs(two))  # same run ids
    assert_same_outputs(two, one)  # results.csv row order and numbers, weights, epoch tables
    for d in run_dirs(two).values():
        assert trained_once(d, 3)
        m = json.loads((d / "metrics.json").read_text())
        assert m["execution"]["threads"] == 1 and m["execution"]["deterministic"] is True


def test_one_line_per_finished_run_in_plan_numbering(outputs):
    _, text = outputs[2]
    finished = [line for line in text.splitlines() if "worst_case" in line and line.startswith("[")]
    assert sorted(line.split("]")[0] for line in finished) == ["[1/4", "[2/4", "[3/4", "[4/4"]


@pytest.mark.slow
def test_a_dead_job_fails_its_run_and_a_rerun_resumes_it(tmp_path, outputs):
    spec, out = tmp_path / "spec.yaml", tmp_path / "out"
    spec.write_text(SPEC4)
    marker = tmp_path / "killed-once"
    r = advrun("run", str(spec), "-o", str(out), "--jobs", "2", "--no-report",
               ADVRUN_FAULT=f"epoch:2@{marker}")  # fmt: skip
    assert r.returncode == 1, (r.stdout, r.stderr)  # a run failed: the exit code says so
    assert "its job died: SIGKILL" in r.stderr
    states = {n: json.loads((d / "status.json").read_text()) for n, d in run_dirs(out).items()}
    failed = [n for n, st in states.items() if st["state"] == "failed"]
    assert len(failed) == 1 and states[failed[0]]["resumable"] is True
    assert sum(st["state"] == "done" for st in states.values()) == 3  # the others went on
    again = advrun("run", str(spec), "-o", str(out), "--jobs", "2", "--no-report")
    assert again.returncode == 0, again.stderr
    log = (run_dirs(out)[failed[0]] / "log.txt").read_text()
    assert "resumed at epoch 2" in log
    for d in run_dirs(out).values():
        assert trained_once(d, 3)
    assert_same_outputs(out, outputs[1][0])


def test_cores_and_gpus_are_split_between_jobs(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("runner.execute.resources.cpu_count", lambda: 16)
    assert threads_per_job(4) == 4 and threads_per_job(32) == 1
    got, note = slots(4, "cpu")
    assert [s.threads for s in got] == [4, 4, 4, 4] and note is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_job(4) is None  # the user's setting wins
    monkeypatch.setattr("runner.execute.resources.visible_gpus", lambda: ["0", "1"])
    got, note = slots(4, "auto")  # never two jobs on one GPU unless asked
    assert [s.gpu for s in got] == ["0", "1"] and "--jobs-per-gpu" in note
    got, _ = slots(4, "auto", jobs_per_gpu=2)
    assert [s.gpu for s in got] == ["0", "1", "0", "1"]
    assert Slot(0, "1", None).env() == {"CUDA_VISIBLE_DEVICES": "1"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--jobs", "0"], "--jobs 0"),
        (["--jobs-per-gpu", "0"], "--jobs-per-gpu 0"),
        (["--address", "x:1"], "--launcher ray"),
        (["--launcher", "ray", "--jobs", "2"], "--jobs is for the local launcher"),
        (["--launcher", "serial", "--jobs", "2"], "--launcher jobs"),
    ],
)
def test_bad_parallel_options_are_usage_errors(tmp_path, args, needle):
    (tmp_path / "spec.yaml").write_text(SPEC4)
    r = advrun("run", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("launcher", "jobs", "expected"),
    [("local", 1, "serial"), ("local", 3, "jobs"), ("serial", 1, "serial"), ("jobs", 1, "jobs"),
     ("jobs", 2, "jobs"), ("ray", 1, "ray")],
)  # fmt: skip
def test_launcher_by_name_or_by_jobs(monkeypatch, launcher, jobs, expected):
    import argparse

    from runner.commands.run import _launcher_name
    from runner.execute.launchers import LAUNCHERS

    monkeypatch.delenv("WORLD_SIZE", raising=False)  # not under torchrun
    got = _launcher_name(argparse.Namespace(launcher=launcher, jobs=jobs))
    assert got == expected and got in LAUNCHERS.names()
