"""``advrun run SPEC --launcher ray``: one Ray task per run, on an existing Ray cluster.

Every run that is not done becomes a task asking for what it needs (``num_gpus=1`` when the run
trains on CUDA, else ``--cpus-per-run`` CPUs). Tasks write into the same run store, which must be a
path every node sees (NFS or similar), and claim their run like any other process. Ray retries a
task whose worker process died up to ``--retries`` times; the retry claims the run again (the dead
worker's claim is stale) and resumes it from its last epoch checkpoint. A run that fails on its own
(a diverged loss) is not retried. The results table and the report are built by the driver once
every task has ended, exactly as after a serial run.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import AdvrunError
from runner.execute.launchers.base import Launcher
from runner.execute.step import Outcome, Tally, is_done, step
from runner.store import Store

if TYPE_CHECKING:
    from runner.compile import Run
    from runner.execute.claim import Claim, Holder
    from runner.execute.options import Options

POLL_S = 0.5
# advrun's own environment settings that a task on another node must see too
PASSED_ENV = ("ADVRUN_HEARTBEAT_S", "ADVRUN_FAULT", "ADVRUN_FAULT_LOG")


def import_ray():
    try:
        import ray
    except ImportError:
        raise AdvrunError(
            "--launcher ray needs Ray: pip install 'advrun[ray]' (or pip install 'ray[default]')"
        ) from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at ``address``, or start a local Ray instance; returns the ray module."""
    ray = import_ray()
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
        try:
            if address:
                ray.init(address=address, log_to_driver=False, **kwargs)
            else:
                ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise AdvrunError(f"could not start or join Ray at {address or 'local'}: {e}") from None
    return ray


def run_task(run: Run, root: str, opts: Options) -> Outcome:
    """The body of one Ray task: the run's step (claim, skip if done, execute, resuming)."""
    store = Store(Path(root))
    return step(run, store, opts, acquire=lambda claim: _acquire(claim, run, store, opts))


def _acquire(claim: Claim, run: Run, store: Store, opts: Options) -> Holder | None:
    """Take ``claim``; a retry can find the dead worker's claim not yet stale (it ran on another
    node): wait until it is. A holder whose heartbeat moves is alive: returned at once (the slot
    goes back), as is any holder once the run is done."""
    observed: dict[str, tuple[int, float]] = {}
    first: tuple[str, int] | None = None
    while (holder := claim.try_acquire(observed)) is not None:
        if is_done(store, opts, run):
            return holder
        if first is None:
            first = (holder.token, holder.beat)
        elif (holder.token, holder.beat) != first:
            return holder
        time.sleep(min(POLL_S, claim.interval / 2))
    return None


class RayLauncher(Launcher):
    """One Ray task per run (``--launcher ray``, ``--address``, ``--retries``,
    ``--cpus-per-run``)."""

    name = "ray"

    def launch(self, store: Store, opts: Options, runs: list[Run]) -> list[Outcome]:
        ray = connect(self.settings.address)
        try:
            return self._drive(ray, store, opts, runs)
        finally:
            ray.shutdown()  # a local instance stops; a cluster is only left by this driver

    def _drive(self, ray: Any, store: Store, opts: Options, runs: list[Run]) -> list[Outcome]:
        tally = Tally(runs, store, opts)
        retries = self.settings.retries
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        quiet = replace(opts, verbose=False)
        root = str(store.root.resolve())
        task = ray.remote(run_task)
        pending: dict[Any, Run] = {}

        def submit(run: Run) -> None:
            cuda = gpus and opts.device in ("auto", "cuda") or opts.device.startswith("cuda")
            resources = (
                {"num_gpus": 1, "num_cpus": 1} if cuda else {"num_cpus": self.settings.cpus_per_run}
            )
            ref = task.options(max_retries=retries, retry_exceptions=False, **resources).remote(
                run, root, quiet
            )
            pending[ref] = run
            tally.progress.started(
                run, f"{store.status(run)} -> submitted to Ray ({_fmt(resources)})"
            )

        for run in runs:
            if not tally.already_done(run):
                submit(run)
        while pending or tally.waiting:
            for run in tally.freed():
                submit(run)
            if not pending:
                time.sleep(POLL_S)
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died more often than --retries
                    tally.lost(
                        run, f"its Ray task failed after {retries} retries: {type(e).__name__}"
                    )
                    continue
                tally.settle(outcome)
            tally.progress.tick()
        return tally.results()


def _fmt(resources: dict[str, float]) -> str:
    return ", ".join(f"{k.removeprefix('num_')}={v:g}" for k, v in resources.items())
