"""A study killed mid-trial resumes: the dead worker's trial is failed and run again with the same
parameters (its run resumes from its last epoch); no trial is lost and none is repeated. Local
worker processes share one journal-file study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from exec_helpers import threads_for_tests
from tune_specs import LR_SPACE, finished, summary, trainings, write

from runner.cli import main

ROOT = Path(__file__).resolve().parents[2]
TUNE = LR_SPACE + "  objective: {maximize: robust_accuracy}\n  pruner: none\n  sampler: random\n"


def _running_trial(journal: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if not journal.exists():
        return None
    storage = optuna.storages.JournalStorage(
        JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal)))
    )
    studies = storage.get_all_studies()
    if not studies:
        return None
    study = optuna.load_study(study_name=studies[0].study_name, storage=storage)
    return next((t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"), None)


def _wait_for_an_epoch(out: Path, proc: subprocess.Popen, timeout: float = 180):
    """The running trial, once its run has finished at least one epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        trial = _running_trial(out / "tune" / "study.journal")
        run_id = trial.user_attrs.get("run_id") if trial else None
        if run_id and (out / "runs" / run_id / "checkpoints" / "state.pt").exists():
            return trial
        time.sleep(0.3)
    raise AssertionError("no trial finished an epoch in time")


def test_a_killed_study_resumes_without_losing_or_repeating_trials(tmp_path):
    spec = write(tmp_path, "resume", TUNE + "  trials: 2\n", epochs=4)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "tune", str(spec), "-o", str(out)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads_for_tests())},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    killed = _wait_for_an_epoch(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(["tune", str(spec), "-o", str(out), "-q"]) == 0
    s = summary(out)
    assert len(finished(s)) == 2  # exactly the requested number
    dead = s["trials"][killed.number]
    assert dead["state"] == "fail" and "worker process died" in dead["failure"]
    retry = next(t for t in s["trials"] if t["retry_of"] == killed.number)
    assert retry["state"] == "complete" and retry["params"] == dead["params"]
    assert retry["run_id"] == dead["run_id"]  # the same run, resumed from its last epoch
    log = (out / "runs" / retry["run_id"] / "log.txt").read_text()
    assert "resumed at epoch" in log and trainings(out / "runs" / retry["run_id"]) == 1
    run_ids = [t["run_id"] for t in finished(s)]
    assert len(set(run_ids)) == 2


@pytest.mark.slow
def test_local_workers_share_one_study_and_survive_a_killed_worker(tmp_path):
    spec = write(tmp_path, "workers", TUNE + "  trials: 4\n", epochs=4)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "tune", str(spec), "-o", str(out), "--workers", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    killed = _wait_for_an_epoch(out, proc)
    os.kill(killed.user_attrs["worker"]["pid"], signal.SIGKILL)  # one worker dies mid-trial
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log  # the other worker finished the study
    assert "1 worker(s) exited with an error" in log
    s = summary(out)
    assert len(finished(s)) == 4 and s["counts"].get("fail") == 1
    retry = next(t for t in s["trials"] if t["retry_of"] == killed.number)
    assert retry["state"] == "complete" and retry["params"] == killed.params
    assert len(s["trials"]) == 5  # four finished and the killed one
    run_ids = [t["run_id"] for t in finished(s)]
    assert len(set(run_ids)) == 4
    assert all(trainings(out / "runs" / r) == 1 for r in run_ids)
