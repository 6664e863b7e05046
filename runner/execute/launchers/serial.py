"""``advrun run``: every run not yet done, one after another in this process.

A run claimed by another live process is skipped and revisited once the others are done (see
:mod:`runner.execute.step`), until its owner finishes it or dies.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from runner import faults
from runner.execute.claim import heartbeat_interval
from runner.execute.launchers.base import Launcher
from runner.execute.step import Outcome, Tally, started_text, step

if TYPE_CHECKING:
    from runner.compile import Run
    from runner.execute.options import Options
    from runner.store import Store


class SerialLauncher(Launcher):
    name = "serial"

    def launch(self, store: Store, opts: Options, runs: list[Run]) -> list[Outcome]:
        tally = Tally(runs, store, opts)

        def attempt(run: Run) -> None:
            if tally.already_done(run):
                return
            o = step(run, store, opts, acquire=lambda c: c.try_acquire(tally.observed),
                     announce=lambda c: tally.progress.started(run, started_text(run, store, c)))  # fmt: skip
            tally.settle(o)
            if o.state == "done":
                faults.reached("run_done")

        for run in runs:
            attempt(run)
        while tally.waiting:  # runs of other processes: done by them, or taken over when they die
            time.sleep(min(1.0, heartbeat_interval() / 2))
            for run in list(tally.waiting.values()):
                attempt(run)
        outcomes = tally.results()
        _free_cuda()
        return outcomes


def _free_cuda() -> None:
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
