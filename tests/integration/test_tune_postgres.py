"""Two workers (separate processes and run stores, as on two machines) share one study on a real
PostgreSQL server; a worker that dies has its trial failed by the heartbeat and retried.

.ci/run starts the server and sets ADVRUN_TEST_POSTGRES; without it (local development) these
tests are skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from exec_helpers import threads_for_tests
from tune_specs import LR_SPACE, trainings, write

URL = os.environ.get("ADVRUN_TEST_POSTGRES")
# Skipped in local development without a server; in CI (CI=true) a missing server is a failure.
pytestmark = pytest.mark.skipif(
    not URL and not os.environ.get("CI"),
    reason="ADVRUN_TEST_POSTGRES is not set (.ci/run starts PostgreSQL and sets it)",
)
ROOT = Path(__file__).resolve().parents[2]


def _tune(spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    assert URL, "CI must provide PostgreSQL: .ci/run sets ADVRUN_TEST_POSTGRES"
    cmd = [sys.executable, "-m", "runner", "tune", str(spec), "-o", str(out), "--storage", URL]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_for_tests())}
    return subprocess.Popen(
        [*cmd, *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def _study(name: str):
    import optuna

    from runner.tune.storage import StorageInfo

    storage = StorageInfo(URL, "rdb", 30).open()
    return optuna.load_study(study_name=name, storage=storage)


def _spec(tmp: Path, trials: int, epochs: int = 2) -> tuple[Path, str]:
    name = f"pg-{uuid.uuid4().hex[:10]}"  # a fresh study in the shared database
    tune = LR_SPACE + "    eps: {float: [0.05, 0.12]}\n"  # every combination valid
    tune += f"  objective: {{maximize: robust_accuracy}}\n  trials: {trials}\n  pruner: none\n"
    tune += f"  study_name: {name}\n"
    return write(tmp, "pg", tune, epochs), name


def test_two_workers_share_one_study_exactly(tmp_path):
    from optuna.trial import TrialState

    spec, name = _spec(tmp_path, trials=4)
    outs = [tmp_path / "machine1", tmp_path / "machine2"]
    procs = [_tune(spec, out) for out in outs]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trials = _study(name).get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    assert states == {TrialState.COMPLETE: 4}, states  # exactly the requested number
    params = [tuple(sorted(t.params.items())) for t in trials]
    run_ids = [t.user_attrs["run_id"] for t in trials]
    assert len(set(params)) == 4 and len(set(run_ids)) == 4  # no parameter set ran twice
    workers = Counter(t.user_attrs["worker"]["pid"] for t in trials)
    assert len(workers) == 2, workers  # both workers took trials
    for run_id in run_ids:  # each run trained once, in exactly one of the run stores
        dirs = [out / "runs" / run_id for out in outs if (out / "runs" / run_id).exists()]
        assert len(dirs) == 1 and trainings(dirs[0]) == 1


def test_a_dead_workers_trial_is_failed_and_retried(tmp_path):
    from optuna.trial import TrialState

    spec, name = _spec(tmp_path, trials=2, epochs=6)
    first = _tune(spec, tmp_path / "dies", "--heartbeat", "1")
    deadline = time.time() + 240
    running = None
    while time.time() < deadline and running is None:
        time.sleep(0.5)
        try:
            trials = _study(name).get_trials(deepcopy=False)
        except KeyError:  # the study does not exist yet
            continue
        # a trial that is training: its parameters are all drawn and its run is named (killing
        # it between two suggest calls would leave a trial with part of its parameters)
        running = next(
            (t for t in trials if t.state == TrialState.RUNNING and "run_id" in t.user_attrs),
            None,
        )
    assert running is not None, "the first worker never started a trial"
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = _tune(spec, tmp_path / "lives", "--heartbeat", "1")
    log = second.communicate(timeout=300)[0]
    assert second.returncode == 0, log
    trials = _study(name).get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    assert states[TrialState.FAIL] == 1 and states[TrialState.COMPLETE] == 2, states
    dead = next(t for t in trials if t.state == TrialState.FAIL)
    assert dead.number == running.number
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == dead.number)
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
