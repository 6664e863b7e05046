"""`--launcher ray` on a real local Ray cluster (`ray start --head`, 2 CPUs, loopback): the
results of a serial run; a task whose worker dies is retried and resumed; tuning workers as
tasks; a study file refused on a cluster of several nodes. The cluster is stopped whatever
happens."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from exec_helpers import SPEC4, assert_same_outputs, env, run_dirs, start, trained_once
from exec_helpers import advrun as run_cli

pytest.importorskip("ray", reason="Ray is the 'ray' extra: pip install 'advrun[ray]'")

RAY = str(Path(sys.executable).with_name("ray"))
TWO = SPEC4.replace("seeds: [0, 1]", "seeds: [0]")  # 2 runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray >= 2.59 authenticates every client with a token: one for this test's cluster and clients.
# Ray rewrites 127.0.0.1 to the machine's own address unless told the cluster is this machine
# alone (the switch Ray uses on macOS), which keeps every port of the test on loopback.
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
         "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # fmt: skip


def _ray(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env(**TOKEN), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def advrun(*args: str, **extra: str):
    return run_cli(*args, **TOKEN, **extra)


@pytest.fixture(scope="module")
def cluster():
    temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths have a length limit
    port = _free_port()
    r = _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
             "--disable-usage-stats")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _ray("stop", "--force")
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    root = tmp_path_factory.mktemp("serial")
    (root / "spec.yaml").write_text(TWO)
    r = advrun("run", str(root / "spec.yaml"), "-o", str(root / "out"), "--no-report")
    assert r.returncode == 0, r.stderr
    return root / "out"


def test_runs_as_ray_tasks_give_the_serial_results(tmp_path, cluster, serial):
    (tmp_path / "spec.yaml").write_text(TWO)
    out = tmp_path / "out"
    args = ("run", str(tmp_path / "spec.yaml"), "-o", str(out), "--no-report",
            "--launcher", "ray", "--address", cluster)  # fmt: skip
    r = advrun(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("submitted to Ray (cpus=1)") == 2
    assert_same_outputs(out, serial)
    again = advrun(*args)  # finished runs are skipped before submission
    assert again.returncode == 0 and "submitted" not in again.stdout
    assert again.stdout.count("done, skipped") == 2


def test_a_task_whose_worker_dies_is_retried_and_resumed(tmp_path, cluster, serial):
    (tmp_path / "spec.yaml").write_text(TWO)
    out, marker = tmp_path / "out", tmp_path / "killed-once"
    r = advrun("run", str(tmp_path / "spec.yaml"), "-o", str(out), "--no-report",
               "--launcher", "ray", "--address", cluster, "--retries", "2",
               ADVRUN_FAULT=f"epoch:2@{marker}")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert marker.exists()  # a worker really was killed at epoch 2
    logs = {n: (d / "log.txt").read_text() for n, d in run_dirs(out).items()}
    resumed = [n for n, text in logs.items() if "resumed at epoch 2" in text]
    assert len(resumed) == 1
    for d in run_dirs(out).values():
        assert trained_once(d, 3)  # nothing duplicated
    assert_same_outputs(out, serial)


@pytest.mark.slow
def test_tuning_workers_as_ray_tasks(tmp_path, cluster):
    from tune_specs import LR_SPACE, spec_text, summary

    spec = tmp_path / "tune.yaml"
    tune = LR_SPACE + "  objective: {maximize: robust_accuracy}\n  trials: 3\n  pruner: none\n"
    tune += "  sampler: random\n  seed: 3\n"
    spec.write_text(spec_text("raytune", tune))
    p = start("tune", str(spec), "-o", str(tmp_path / "out"), "--launcher", "ray",
              "--address", cluster, "--workers", "2", **TOKEN)  # fmt: skip
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, out + err
    s = summary(tmp_path / "out")
    assert s["counts"].get("complete", 0) + s["counts"].get("pruned", 0) == 3
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "out" / "tune" / "study.journal")))
    (study,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    pids = {t.user_attrs["worker"]["pid"] for t in trials}
    assert p.pid not in pids  # every trial ran in a Ray worker, none in the driver


def test_a_study_file_is_refused_on_several_nodes(monkeypatch, tmp_path):
    """A second node cannot join a loopback-only Ray (Ray refuses it), so the cluster's node
    list is faked here; everything else is the real code path up to the refusal."""
    from runner.errors import AdvrunError
    from runner.tune import ray_workers
    from runner.tune.storage import storage_info

    class TwoNodes:
        shut = False

        def nodes(self):
            return [{"Alive": True}, {"Alive": True}, {"Alive": False}]

        def shutdown(self):
            self.shut = True

    fake = TwoNodes()
    monkeypatch.setattr(ray_workers, "connect", lambda address: fake)
    journal = storage_info(None, tmp_path, 30)
    with pytest.raises(AdvrunError, match="file locks do not hold across machines") as e:
        ray_workers.tune_on_ray(None, journal, 2, "10.0.0.1:6379")
    assert "postgresql://" in str(e.value) and "2 nodes" in str(e.value) and fake.shut
    sqlite = storage_info(f"sqlite:///{tmp_path / 's.db'}", tmp_path, 30)
    with pytest.raises(AdvrunError, match="file locks"):
        ray_workers.tune_on_ray(None, sqlite, 2, "10.0.0.1:6379")


def test_without_ray_the_option_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    from runner.errors import AdvrunError
    from runner.execute.launchers import ray as ray_launcher

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(AdvrunError, match=r"pip install 'advrun\[ray\]'"):
        ray_launcher.import_ray()
