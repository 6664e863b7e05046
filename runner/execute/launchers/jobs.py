"""``advrun run --jobs N``: up to N runs at once on this machine, one process each.

Each run gets a fresh *spawned* process (never forked: torch's threads and CUDA state must not be
inherited) with its share of the CPU cores or a GPU of its own (:mod:`runner.execute.resources`).
The job claims its run like any other process, so a concurrent ``advrun run`` on the same output
directory cooperates. A job that dies (SIGKILL, out of memory) marks its run failed with the
reason, resumable: the other jobs go on, the exit code says a run failed, and a rerun resumes the
run from its last epoch. Results are gathered by the parent exactly as a serial run's.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.execute.launchers.base import Launcher
from runner.execute.resources import Slot, slots
from runner.execute.step import Outcome, Tally, started_text, step
from runner.store import Store

if TYPE_CHECKING:
    from runner.compile import Run
    from runner.execute.options import Options

POLL_S = 0.2


def _job(run: Run, root: str, opts: Options, slot: Slot, conn: Connection) -> None:
    """The job process: set its CPU/GPU share before torch starts, run the step, report."""
    os.environ.update(slot.env())
    import torch

    from runner.errors import AdvrunError

    if slot.threads is not None:
        torch.set_num_threads(slot.threads)
    store = Store(Path(root))

    def announce(claim: Any) -> None:
        conn.send(("started", f"{started_text(run, store, claim)} (job {slot.index + 1})"))

    try:
        outcome = step(run, store, opts, announce=announce)
    except AdvrunError as e:
        outcome = Outcome(run, "failed", str(e))
    except Exception as e:  # an advrun bug in one job must not take the others down
        outcome = Outcome(run, "failed", f"internal error: {type(e).__name__}: {e}")
    try:
        conn.send(("outcome", outcome))
    finally:
        conn.close()


@dataclass
class _Active:
    run: Run
    slot: Slot
    process: Any
    conn: Connection
    result: Outcome | None = None


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory, or killed)" if -exitcode == signal.SIGKILL else ""
        return f"its job died: {name}{hint}"
    return f"its job exited with code {exitcode} without a result"


class JobsLauncher(Launcher):
    """Up to ``--jobs`` runs at once, each in a spawned process of its own."""

    name = "jobs"

    def launch(self, store: Store, opts: Options, runs: list[Run]) -> list[Outcome]:
        ctx = mp.get_context("spawn")
        free, note = slots(self.settings.jobs, opts.device, self.settings.jobs_per_gpu)
        tally = Tally(runs, store, opts)
        if note and opts.verbose:
            print(note, flush=True)
        queue = [run for run in runs if not tally.already_done(run)]
        quiet = replace(opts, verbose=False)  # a job prints nothing: the parent prints each event
        active: list[_Active] = []
        while queue or active or tally.waiting:
            for run in tally.freed():  # free, or its holder died
                queue.insert(0, run)
            while queue and free:
                run, slot = queue.pop(0), free.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_job, args=(run, str(store.root), quiet, slot, child),
                                name=f"advrun-job-{slot.index + 1}", daemon=False)  # fmt: skip
                p.start()
                child.close()
                active.append(_Active(run, slot, p, parent))
            time.sleep(POLL_S)
            for a in list(active):
                _drain(a, tally)
                if a.process.is_alive():
                    continue
                a.process.join()
                _drain(a, tally)
                active.remove(a)
                free.append(a.slot)
                free.sort(key=lambda s: s.index)
                if a.result is None:  # died without a word: SIGKILL, the OOM killer, a segfault
                    tally.lost(a.run, _death(a.process.exitcode))
                else:
                    tally.settle(a.result)
            tally.progress.tick()
        return tally.results()


def _drain(a: _Active, tally: Tally) -> None:
    while a.conn.poll():
        try:
            kind, value = a.conn.recv()
        except (EOFError, OSError):
            return
        if kind == "started":
            tally.progress.started(a.run, value)
        else:
            a.result = value
