"""The one per-run step of every launcher: claim the run, skip it if done, execute it, settle it.

A launcher (:mod:`runner.execute.launchers`) decides only *where* a run executes: this process, a
spawned job, a Ray task, all ranks of a torchrun. What happens to one run is written here once:
:func:`claim_run` takes its claim (or says who holds it, or that it is done), :func:`execute`
trains and evaluates it under that claim, :func:`step` does both and releases the claim, and a
:class:`Tally` settles each :class:`Outcome` into the outcomes of the execution and one printed
line per event.

A run claimed by another live process (a colleague's ``advrun run`` on the same output directory,
another job) comes back *busy* and is revisited: when its owner finishes it, it counts as done;
when its claim goes stale (the owner died), it is taken over and resumed from its last epoch. So
several processes on one run store train every run exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from runner.errors import RunFailed
from runner.execute.claim import Claim, ClaimLost, Holder, live_holder
from runner.execute.progress import Progress
from runner.store import RunMetrics, Store, now

if TYPE_CHECKING:
    from runner.compile import Run
    from runner.dist import Dist
    from runner.execute.options import Options

State = Literal["done", "skipped", "failed", "busy"]
ALREADY_DONE = "already done"  # found done before its claim was taken
DONE_ELSEWHERE = "done by another process"  # found done once claimed, or while it was held


@dataclass(frozen=True)
class Outcome:
    """What came of one run: ``done``; ``skipped`` (it was done); ``failed`` (``message`` says
    why); or ``busy``: another live process holds its claim (``message`` names it), try again."""

    run: Run
    state: State
    message: str = ""
    metrics: RunMetrics | None = None  # done: in the process that wrote them


def is_done(store: Store, opts: Options, run: Run) -> bool:
    """Whether ``run`` is done and stays so (``--force`` retrains it)."""
    return not opts.force and store.status(run) == "done"


def claim_run(
    run: Run, store: Store, opts: Options, acquire: Callable[[Claim], Holder | None] | None = None
) -> Claim | Outcome:
    """``run``'s claim, held; an Outcome instead when another live process holds it (busy) or
    the run turned out done. ``acquire`` takes the claim (default ``Claim.try_acquire``) and
    returns the live holder when it cannot."""
    claim = Claim(store.run_dir(run), run.id)
    holder = acquire(claim) if acquire is not None else claim.try_acquire()
    if holder is None:
        if not is_done(store, opts, run):
            return claim
        claim.release()  # finished by its last holder
    if is_done(store, opts, run):
        return Outcome(run, "skipped", DONE_ELSEWHERE)
    return Outcome(run, "busy", str(holder))


def started_text(run: Run, store: Store, claim: Claim) -> str:
    """What the start of a claimed run prints: 'took over from HOST pid N, partial -> running'."""
    took = f"took over from {claim.took_over}, " if claim.took_over else ""
    return f"{took}{store.status(run)} -> running"


def execute(
    run: Run,
    store: Store,
    opts: Options,
    claim: Claim | None,
    errors: tuple[type[Exception], ...] = (RunFailed, ClaimLost),
    dist: Dist | None = None,
) -> Outcome:
    """Train (or resume) and evaluate ``run`` under ``claim``; ``errors`` become a failed
    Outcome (anything else propagates). Under torchrun every rank calls this, rank 0 with the
    claim."""
    from runner.execute.run import execute_run  # torch: only when something runs

    try:
        metrics = execute_run(run, store, opts, claim=claim, dist=dist)
    except errors as e:
        return Outcome(run, "failed", str(e))
    return Outcome(run, "done", metrics=metrics)


def step(
    run: Run,
    store: Store,
    opts: Options,
    acquire: Callable[[Claim], Holder | None] | None = None,
    announce: Callable[[Claim], None] | None = None,
) -> Outcome:
    """The per-run step in one process: claim ``run``, skip it if done, ``announce`` its start,
    execute it; the claim is released whatever happens."""
    claim = claim_run(run, store, opts, acquire)
    if isinstance(claim, Outcome):
        return claim
    try:
        if announce is not None:
            announce(claim)
        return execute(run, store, opts, claim)
    finally:
        claim.release()


class Tally:
    """The outcomes of an execution, settled one by one and printed as they come (one line per
    event, and the live summary on a terminal); runs held by another process wait here."""

    def __init__(self, runs: list[Run], store: Store, opts: Options) -> None:
        self.runs, self.store, self.opts = runs, store, opts
        self.progress = Progress(runs, opts.verbose)
        self.outcomes: dict[str, Outcome] = {}
        self.waiting: dict[str, Run] = {}  # claimed by another live process
        self.observed: dict[str, tuple[int, float]] = {}  # their heartbeats, to tell when they stop

    def already_done(self, run: Run) -> bool:
        """Settle ``run`` as skipped when it is done before anything was tried."""
        if not is_done(self.store, self.opts, run):
            return False
        self.settle(Outcome(run, "skipped", ALREADY_DONE))
        return True

    def settle(self, o: Outcome) -> Outcome:
        """Record ``o``: a busy run waits (noted once), the others are final."""
        run = o.run
        if o.state == "busy":
            if run.id not in self.waiting:
                self.progress.note(run, f"claimed by {o.message} (alive); waiting for it to "
                                   "finish or die")  # fmt: skip
                self.waiting[run.id] = run
            return o
        self.waiting.pop(run.id, None)
        self.outcomes[run.id] = o
        if o.state == "skipped":
            self.progress.skipped(run, "done, skipped" if o.message == ALREADY_DONE else o.message)
        elif o.state == "done":
            self.progress.finished(run, o.metrics)
        else:
            self.progress.failed(run, o.message)
        return o

    def lost(self, run: Run, why: str) -> None:
        """``run``'s process died without a word (SIGKILL, out of memory, a Ray worker lost more
        often than retried): failed, resumable from its last epoch."""
        self.store.set_status(run, "failed", diagnosis=f"{why}; run again to resume from the last "
                              "epoch", resumable=True, finished=now())  # fmt: skip
        self.settle(Outcome(run, "failed", why))

    def freed(self) -> list[Run]:
        """Waiting runs to try again: those whose holder let go or died. Runs it finished are
        settled as skipped."""
        free = []
        for run in list(self.waiting.values()):
            if is_done(self.store, self.opts, run):
                self.settle(Outcome(run, "skipped", DONE_ELSEWHERE))
            elif live_holder(self.store.run_dir(run), self.observed) is None:
                del self.waiting[run.id]
                free.append(run)
        return free

    def results(self) -> list[Outcome]:
        """Every run's outcome in plan order (the live summary line is cleared)."""
        self.progress.close()
        return [self.outcomes[r.id] for r in self.runs]
