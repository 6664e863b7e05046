"""Run claims: exclusive, stale ones taken over, lost ones noticed; and two real `advrun run`
processes on one output directory training every run exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from exec_helpers import SPEC4, advrun, assert_same_outputs, run_dirs, start, trained_once

from runner.execute.claim import CLAIM, Claim, ClaimLost, Holder, live_holder


@pytest.fixture(autouse=True)
def _fast_heartbeat(monkeypatch):
    monkeypatch.setenv("ADVRUN_HEARTBEAT_S", "0.05")


def test_a_claim_is_exclusive_and_released(tmp_path):
    a, b = Claim(tmp_path), Claim(tmp_path)
    assert a.try_acquire() is None
    holder = b.try_acquire({})
    assert isinstance(holder, Holder) and holder.pid == os.getpid() and holder.token == a.token
    a.release()
    assert not (tmp_path / CLAIM).exists()
    assert b.try_acquire() is None
    b.release()


def test_the_heartbeat_moves_and_the_owner_checks_it_still_owns(tmp_path):
    a = Claim(tmp_path)
    assert a.try_acquire() is None
    first = Holder.read(tmp_path / CLAIM).beat
    deadline = time.monotonic() + 10
    while Holder.read(tmp_path / CLAIM).beat == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert Holder.read(tmp_path / CLAIM).beat > first
    a.check()  # still ours
    # another process took it over (as after a long pause of this one): the owner must stop
    (tmp_path / CLAIM).write_text(json.dumps({**json.loads((tmp_path / CLAIM).read_text()),
                                              "token": "someone-else"}))  # fmt: skip
    with pytest.raises(ClaimLost):
        a.check()
    a.release()
    assert (tmp_path / CLAIM).exists()  # not ours to delete


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_dead_process_on_this_host_loses_its_claim_at_once(tmp_path):
    a = Claim(tmp_path)
    assert a.try_acquire() is None
    a._stop.set()  # freeze it, then make it look like a process that has died
    d = json.loads((tmp_path / CLAIM).read_text())
    (tmp_path / CLAIM).write_text(json.dumps({**d, "pid": _dead_pid(), "pid_start": None}))
    b = Claim(tmp_path)
    assert b.try_acquire({}) is None
    assert b.took_over is not None and b.took_over.token == a.token
    b.release()


def test_another_hosts_claim_is_taken_over_only_when_its_heartbeat_stops(tmp_path):
    frozen = {"host": "elsewhere/12345678", "pid": 4242, "started": "", "token": "t0",
              "beat": 7, "interval": 0.05}  # fmt: skip
    (tmp_path / CLAIM).write_text(json.dumps(frozen))
    b, observed = Claim(tmp_path), {}
    t0 = time.monotonic()
    assert b.try_acquire(observed) is not None  # first sight: alive as far as we know
    assert live_holder(tmp_path, {}) is not None
    while b.try_acquire(observed) is not None:
        assert time.monotonic() - t0 < 10
        time.sleep(0.02)
    waited = time.monotonic() - t0
    assert waited >= 6 * 0.05 * 0.9  # STALE_AFTER missed beats, not at once
    assert b.took_over.host == "elsewhere/12345678"
    b.release()


def test_a_beating_claim_of_another_host_is_never_taken(tmp_path):
    path = tmp_path / CLAIM
    b, observed = Claim(tmp_path), {}
    for beat in range(40):  # 40 beats over 2 s: 6x the interval passes many times over
        path.write_text(json.dumps({"host": "elsewhere/1", "pid": 1, "started": "",
                                    "token": "t", "beat": beat, "interval": 0.05}))  # fmt: skip
        assert b.try_acquire(observed) is not None
        time.sleep(0.05)


def _spec(tmp_path, text=SPEC4):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The reference: the 4-run spec in one uninterrupted process."""
    root = tmp_path_factory.mktemp("serial")
    spec = _spec(root)
    r = advrun("run", str(spec), "-o", str(root / "out"), "-q", "--no-report")
    assert r.returncode == 0, r.stderr
    return root / "out"


def test_two_processes_on_one_output_train_every_run_once(tmp_path, serial):
    spec, out = _spec(tmp_path), tmp_path / "out"
    procs = [start("run", str(spec), "-o", str(out), "--no-report") for _ in range(2)]
    texts = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], texts
    for d in run_dirs(out).values():
        assert trained_once(d, 3), (d.name, (d / "log.txt").read_text())
        assert (d / "log.txt").read_text().count(" training ") == 1
    both = texts[0][0] + texts[1][0]
    assert both.count("-> running") == 4  # each run started by exactly one of them
    assert_same_outputs(out, serial)


def test_a_killed_holder_is_taken_over_and_its_run_finished(tmp_path, serial):
    """A dies (SIGKILL) holding the claim of run 1 mid-training; B, started at the same time,
    does the other runs, takes run 1 over once A's claim is stale and resumes it."""
    spec, out = _spec(tmp_path), tmp_path / "out"
    a = start("run", str(spec), "-o", str(out), "--no-report", ADVRUN_FAULT="epoch:2")
    deadline = time.monotonic() + 300
    first = out / "runs"
    while not any((d / "checkpoints" / "last.pt").exists() for d in first.glob("*")):
        assert a.poll() is None and time.monotonic() < deadline  # A trains the first run
        time.sleep(0.05)
    b = start("run", str(spec), "-o", str(out), "--no-report")
    a.wait(timeout=300)
    assert a.returncode == -signal.SIGKILL
    out_b, err_b = b.communicate(timeout=600)
    assert b.returncode == 0, err_b
    assert "took over from" in out_b
    for d in run_dirs(out).values():
        assert trained_once(d, 3), (d.name, (d / "log.txt").read_text())
    assert_same_outputs(out, serial)
