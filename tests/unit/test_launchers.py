"""Launchers by name over one per-run step: the registry, the choice of ``advrun run``, and how
the step and the tally treat a run that is done, held by another process, or free."""

from __future__ import annotations

import argparse
import io

import pytest
from spec_base import BASE

from runner.compile import compile_spec
from runner.errors import AdvrunError
from runner.execute.claim import Claim
from runner.execute.launchers import LAUNCHERS, Launcher
from runner.execute.options import Options
from runner.execute.step import ALREADY_DONE, DONE_ELSEWHERE, Outcome, Tally, claim_run
from runner.spec import load_spec
from runner.store import Store


def test_every_launcher_is_registered_under_its_own_name():
    assert LAUNCHERS.names() == ["serial", "jobs", "ray", "torchrun"]
    for name in LAUNCHERS.names():
        cls = LAUNCHERS.load(name)
        assert issubclass(cls, Launcher) and cls.name == name
    with pytest.raises(AdvrunError, match="unknown launcher 'seria' \\(did you mean 'serial'"):
        LAUNCHERS.get("seria")


@pytest.mark.parametrize(
    ("world", "launcher", "jobs", "chosen"),
    [
        ("1", "local", 1, "serial"),
        ("1", "local", 3, "jobs"),
        ("1", "ray", 1, "ray"),
        ("2", "local", 1, "torchrun"),
    ],  # fmt: skip
)
def test_run_picks_the_launcher_by_name(monkeypatch, world, launcher, jobs, chosen):
    from runner.commands.run import _launcher_name

    monkeypatch.setenv("WORLD_SIZE", world)
    assert _launcher_name(argparse.Namespace(launcher=launcher, jobs=jobs)) == chosen


@pytest.mark.parametrize(
    ("env", "chosen"),
    [
        ({"WORLD_SIZE": "1", "ADVRUN_DDP": "1"}, "torchrun"),  # torchrun --nproc_per_node=1
        ({"WORLD_SIZE": "1", "ADVRUN_DDP": "0"}, "serial"),
        ({"ADVRUN_DDP": "1"}, "serial"),  # not under torchrun at all: the switch does nothing
    ],
)
def test_advrun_ddp_trains_one_rank_with_ddp_under_torchrun(monkeypatch, env, chosen):
    """One GPU cannot hold two nccl ranks: ADVRUN_DDP=1 runs the DDP path on a single one."""
    from runner.commands.run import _launcher_name

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("ADVRUN_DDP", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _launcher_name(argparse.Namespace(launcher="local", jobs=1)) == chosen


def test_under_torchrun_jobs_are_refused(monkeypatch):
    from runner.commands.run import _launcher_name

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(AdvrunError, match="torchrun's ranks are the parallelism"):
        _launcher_name(argparse.Namespace(launcher="local", jobs=2))


class _Store(Store):
    """A run store whose runs are done when named in ``done`` (no training needed)."""

    def __init__(self, root):
        super().__init__(root)
        self.done: set[str] = set()

    def status(self, run):
        return "done" if run.id in self.done else "new"


@pytest.fixture
def runs(write_spec):
    return compile_spec(
        load_spec(write_spec(BASE.replace("seeds: [0]", "seeds: [0, 1]"))).spec
    ).runs


def test_the_step_claims_a_free_run_and_reports_a_held_or_finished_one(tmp_path, runs):
    store, opts, run = _Store(tmp_path), Options(verbose=False), runs[0]
    other = Claim(store.run_dir(run), run.id)
    assert other.try_acquire() is None  # a live process (this one) holds the run
    busy = claim_run(run, store, opts)
    assert isinstance(busy, Outcome) and busy.state == "busy" and "pid" in busy.message
    other.release()
    mine = claim_run(run, store, opts)
    assert isinstance(mine, Claim) and mine.owned()
    store.done.add(run.id)  # finished by its holder meanwhile
    mine.release()
    done = claim_run(run, store, opts)
    assert done == Outcome(run, "skipped", DONE_ELSEWHERE)
    assert not (store.run_dir(run) / "claim.json").exists()  # the claim was given back
    forced = claim_run(run, store, Options(verbose=False, force=True))
    assert isinstance(forced, Claim)  # --force retrains a done run
    forced.release()


def test_the_tally_notes_a_busy_run_once_and_keeps_plan_order(tmp_path, runs, capsys):
    store, opts = _Store(tmp_path), Options(verbose=True)
    store.done.add(runs[1].id)
    runs = runs[:2]
    tally = Tally(runs, store, opts)
    tally.progress.out = out = io.StringIO()
    assert tally.already_done(runs[1]) and not tally.already_done(runs[0])
    for _ in range(2):
        tally.settle(Outcome(runs[0], "busy", "elsewhere pid 7"))
    assert list(tally.waiting) == [runs[0].id]
    tally.settle(Outcome(runs[0], "failed", "diverged"))
    assert tally.waiting == {}
    assert [(o.state, o.message) for o in tally.results()] == [
        ("failed", "diverged"),
        ("skipped", ALREADY_DONE),
    ]
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(f"{runs[1].slug}: done, skipped")
    assert sum("claimed by elsewhere pid 7 (alive)" in line for line in lines) == 1
    assert "FAILED: diverged" in capsys.readouterr().err
