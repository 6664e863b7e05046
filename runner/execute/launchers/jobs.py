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
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from runner.compile import Run
from runner.execute.claim import live_holder
from runner.execute.launchers.serial import Outcome, settle
from runner.execute.options import Options
from runner.execute.progress import Progress
from runner.execute.resources import Slot, slots
from runner.store import Store, now

POLL_S = 0.2


def _job(run: Run, root: str, opts: Options, slot: Slot, conn: Connection) -> None:
    """The job process: set its CPU/GPU share before torch starts, claim, execute, report."""
    os.environ.update(slot.env())
    import torch

    from runner.errors import AdvrunError, RunFailed
    from runner.execute.claim import Claim, ClaimLost
    from runner.execute.run import execute_run

    if slot.threads is not None:
        torch.set_num_threads(slot.threads)
    store = Store(Path(root))
    claim = Claim(store.run_dir(run), run.id)
    holder = claim.try_acquire()
    if holder is not None:
        conn.send(("busy", str(holder)))
        return
    try:
        if not opts.force and store.status(run) == "done":
            conn.send(("skipped", "done by another process"))
            return
        took = f"took over from {claim.took_over}, " if claim.took_over else ""
        conn.send(("started", f"{took}{store.status(run)} -> running (job {slot.index + 1})"))
        m = execute_run(run, store, opts, claim=claim)
        conn.send(("done", m))
    except (RunFailed, ClaimLost) as e:
        conn.send(("failed", str(e)))
    except AdvrunError as e:
        conn.send(("failed", str(e)))
    except Exception as e:  # an advrun bug in one job must not take the others down
        conn.send(("failed", f"internal error: {type(e).__name__}: {e}"))
    finally:
        claim.release()
        conn.close()


@dataclass
class _Active:
    run: Run
    slot: Slot
    process: Any
    conn: Connection
    started: bool = False
    result: tuple[str, Any] | None = None


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory, or killed)" if -exitcode == signal.SIGKILL else ""
        return f"its job died: {name}{hint}"
    return f"its job exited with code {exitcode} without a result"


def execute_parallel(
    store: Store, opts: Options, runs: list[Run], jobs: int, jobs_per_gpu: int = 1
) -> list[Outcome]:
    """Run every not-yet-done run, up to ``jobs`` at once; outcomes in plan order."""
    ctx = mp.get_context("spawn")
    free, note = slots(jobs, opts.device, jobs_per_gpu)
    progress = Progress(runs, opts.verbose)
    if note and opts.verbose:
        print(note, flush=True)
    outcomes: dict[str, Outcome] = {}
    queue: list[Run] = []
    for run in runs:
        if not opts.force and store.status(run) == "done":
            outcomes[run.id] = Outcome(run, "skipped", "already done")
            progress.skipped(run, "done, skipped")
        else:
            queue.append(run)
    waiting: dict[str, Run] = {}  # claimed by another live process: retried until done or free
    observed: dict[str, tuple[int, float]] = {}  # their heartbeats, to tell when they stop
    active: list[_Active] = []
    while queue or active or waiting:
        for run in list(waiting.values()):
            if store.status(run) == "done" and not opts.force:
                outcomes[run.id] = Outcome(run, "skipped", "done by another process")
                progress.skipped(run, "done by another process")
                del waiting[run.id]
            elif live_holder(store.run_dir(run), observed) is None:  # free, or its holder died
                del waiting[run.id]
                queue.insert(0, run)
        while queue and free:
            run, slot = queue.pop(0), free.pop(0)
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_job, args=(run, str(store.root), _quiet(opts), slot, child),
                            name=f"advrun-job-{slot.index + 1}", daemon=False)  # fmt: skip
            p.start()
            child.close()
            active.append(_Active(run, slot, p, parent))
        time.sleep(POLL_S)
        for a in list(active):
            _drain(a, progress)
            if a.process.is_alive():
                continue
            a.process.join()
            _drain(a, progress)
            active.remove(a)
            free.append(a.slot)
            free.sort(key=lambda s: s.index)
            _settle(a, store, outcomes, progress, waiting)
        progress.tick()
    progress.close()
    return [outcomes[r.id] for r in runs]


def _quiet(opts: Options) -> Options:
    """A job prints nothing itself: the parent prints one line per event."""
    from dataclasses import replace

    return replace(opts, verbose=False)


def _drain(a: _Active, progress: Progress) -> None:
    while a.conn.poll():
        try:
            kind, value = a.conn.recv()
        except (EOFError, OSError):
            return
        if kind == "started":
            a.started = True
            progress.started(a.run, value)
        else:
            a.result = (kind, value)


def _settle(
    a: _Active,
    store: Store,
    outcomes: dict[str, Outcome],
    progress: Progress,
    waiting: dict[str, Run],
) -> None:
    run = a.run
    if a.result is None:  # died without a word: SIGKILL, the OOM killer, a segfault
        why = _death(a.process.exitcode)
        store.set_status(run, "failed", diagnosis=f"{why}; run again to resume from the last "
                         "epoch", resumable=True, finished=now())  # fmt: skip
        outcomes[run.id] = Outcome(run, "failed", why)
        progress.failed(run, why)
        return
    settle(run, *a.result, outcomes, progress, waiting)
