"""Execute a plan in this process: every run not yet done, each under its claim.

A run claimed by another live process (a colleague's ``advrun run`` on the same output
directory, another job) is skipped and revisited: when its owner finishes it, it counts as done;
when its claim goes stale (the owner died), it is taken over and resumed from its last epoch.
So several processes on one run store train every run exactly once.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from runner import faults
from runner.compile import Run
from runner.errors import RunFailed
from runner.execute.claim import Claim, ClaimLost, Holder, heartbeat_interval
from runner.execute.options import Options
from runner.execute.progress import Progress
from runner.store import Store


@dataclass
class Outcome:
    run: Run
    state: str  # done | skipped | failed
    message: str = ""


def execute_plan(store: Store, opts: Options, runs: list[Run]) -> list[Outcome]:
    """Run every not-yet-done run; a failed run does not stop the others. Outcomes in plan order."""
    from runner.execute.run import execute_run  # torch: only when something runs

    progress = Progress(runs, opts.verbose)
    outcomes: dict[str, Outcome] = {}
    waiting: list[Run] = []
    observed: dict[str, tuple[int, float]] = {}

    def attempt(run: Run) -> Holder | None:
        """Claim and execute ``run``; the holder of its claim when another live process has it."""
        if not opts.force and store.status(run) == "done":
            outcomes[run.id] = Outcome(run, "skipped", "already done")
            progress.skipped(run, "done, skipped")
            return None
        claim = Claim(store.run_dir(run), run.id)
        holder = claim.try_acquire(observed)
        if holder is not None:
            return holder
        try:
            if not opts.force and store.status(run) == "done":  # finished by its last holder
                outcomes[run.id] = Outcome(run, "skipped", "done by another process")
                progress.skipped(run, "done by another process")
                return None
            how = f"took over from {claim.took_over}, " if claim.took_over else ""
            progress.started(run, f"{how}{store.status(run)} -> running")
            try:
                m = execute_run(run, store, opts, claim=claim)
            except (ClaimLost, RunFailed) as e:
                outcomes[run.id] = Outcome(run, "failed", str(e))
                progress.failed(run, str(e))
                return None
            outcomes[run.id] = Outcome(run, "done")
            progress.finished(run, m)
            faults.reached("run_done")
            return None
        finally:
            claim.release()

    for run in runs:
        holder = attempt(run)
        if holder is not None:
            progress.note(run, f"claimed by {holder} (alive); waiting for it to finish or die")
            waiting.append(run)
    while waiting:  # runs of other processes: done by them, or taken over when they die
        time.sleep(min(1.0, heartbeat_interval() / 2))
        waiting = [r for r in waiting if attempt(r) is not None]
    progress.close()
    _free_cuda()
    return [outcomes[r.id] for r in runs]


def _free_cuda() -> None:
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def settle(
    run: Run,
    kind: str,
    value,
    outcomes: dict[str, Outcome],
    progress: Progress,
    waiting: dict[str, Run],
) -> None:
    """Record what a job or a task reported for ``run`` (busy / skipped / done / failed)."""
    if kind == "busy":
        progress.note(run, f"claimed by {value} (alive); waiting for it to finish or die")
        waiting[run.id] = run
    elif kind == "skipped":
        outcomes[run.id] = Outcome(run, "skipped", value)
        progress.skipped(run, value)
    elif kind == "done":
        outcomes[run.id] = Outcome(run, "done")
        progress.finished(run, value)
    else:
        outcomes[run.id] = Outcome(run, "failed", value)
        progress.failed(run, value)
