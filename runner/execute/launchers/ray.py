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
from pathlib import Path
from typing import Any

from runner.compile import Run
from runner.errors import AdvrunError
from runner.execute.claim import live_holder
from runner.execute.launchers.serial import Outcome, settle
from runner.execute.options import Options
from runner.execute.progress import Progress
from runner.store import Store, now

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


def run_task(run: Run, root: str, opts: Options) -> tuple[str, Any]:
    """The body of one Ray task: claim the run, execute it (resuming), report the outcome."""
    from runner.errors import RunFailed
    from runner.execute.claim import Claim, ClaimLost
    from runner.execute.run import execute_run

    store = Store(Path(root))
    claim = Claim(store.run_dir(run), run.id)
    observed: dict[str, tuple[int, float]] = {}
    first: tuple[str, int] | None = None
    # a retry can find the dead worker's claim not yet stale (it ran on another node): wait
    # until it is; but a holder whose heartbeat moves is alive: give the slot back at once
    while (holder := claim.try_acquire(observed)) is not None:
        if store.status(run) == "done":
            return ("skipped", "done by another process")
        if first is None:
            first = (holder.token, holder.beat)
        elif (holder.token, holder.beat) != first:
            return ("busy", str(holder))
        time.sleep(min(POLL_S, claim.interval / 2))
    try:
        if not opts.force and store.status(run) == "done":
            return ("skipped", "done by another process")
        m = execute_run(run, store, opts, claim=claim)
        return ("done", m)
    except (RunFailed, ClaimLost) as e:
        return ("failed", str(e))
    finally:
        claim.release()


def execute_on_ray(
    store: Store,
    opts: Options,
    runs: list[Run],
    address: str | None,
    retries: int,
    cpus_per_run: float = 1.0,
) -> list[Outcome]:
    ray = connect(address)
    try:
        return _drive(ray, store, opts, runs, retries, cpus_per_run)
    finally:
        ray.shutdown()  # a local instance stops; a cluster is only left by this driver


def _drive(ray, store: Store, opts: Options, runs: list[Run], retries: int, cpus_per_run: float):
    progress = Progress(runs, opts.verbose)
    outcomes: dict[str, Outcome] = {}
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    quiet = _quiet(opts)
    root = str(store.root.resolve())
    task = ray.remote(run_task)
    pending: dict[Any, Run] = {}
    waiting: dict[str, Run] = {}
    observed: dict[str, tuple[int, float]] = {}

    def submit(run: Run) -> None:
        cuda = gpus and opts.device in ("auto", "cuda") or opts.device.startswith("cuda")
        resources = {"num_gpus": 1, "num_cpus": 1} if cuda else {"num_cpus": cpus_per_run}
        ref = task.options(max_retries=retries, retry_exceptions=False, **resources).remote(
            run, root, quiet
        )
        pending[ref] = run
        progress.started(run, f"{store.status(run)} -> submitted to Ray ({_fmt(resources)})")

    for run in runs:
        if not opts.force and store.status(run) == "done":
            outcomes[run.id] = Outcome(run, "skipped", "already done")
            progress.skipped(run, "done, skipped")
        else:
            submit(run)
    while pending or waiting:
        for run in list(waiting.values()):
            if store.status(run) == "done" and not opts.force:
                outcomes[run.id] = Outcome(run, "skipped", "done by another process")
                progress.skipped(run, "done by another process")
                del waiting[run.id]
            elif live_holder(store.run_dir(run), observed) is None:
                del waiting[run.id]
                submit(run)
        if not pending:
            time.sleep(POLL_S)
            continue
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for ref in ready:
            run = pending.pop(ref)
            try:
                kind, value = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker died more often than --retries
                why = f"its Ray task failed after {retries} retries: {type(e).__name__}"
                store.set_status(run, "failed", diagnosis=f"{why}; run again to resume from the "
                                 "last epoch", resumable=True, finished=now())  # fmt: skip
                outcomes[run.id] = Outcome(run, "failed", why)
                progress.failed(run, why)
                continue
            settle(run, kind, value, outcomes, progress, waiting)
        progress.tick()
    progress.close()
    return [outcomes[r.id] for r in runs]


def _fmt(resources: dict[str, float]) -> str:
    return ", ".join(f"{k.removeprefix('num_')}={v:g}" for k, v in resources.items())


def _quiet(opts: Options) -> Options:
    from dataclasses import replace

    return replace(opts, verbose=False)


def tune_task(ctx: Any, info: Any, tag: str) -> str:
    """One tuning worker as a Ray task: trials until the study holds ``tune.trials``."""
    from runner.tune.worker import work

    work(ctx, info, tag=f"[{tag}] ")
    return tag


def tune_on_ray(ctx: Any, info: Any, workers: int, address: str | None) -> int:
    """``advrun tune --launcher ray --workers N``: N worker tasks on the study's storage; returns
    how many of them failed."""
    ray = connect(address)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1 and (info.kind == "journal" or info.url.startswith("sqlite")):
            raise AdvrunError(
                f"the study's storage {info.shown} is a file, but this Ray cluster has "
                f"{len(nodes)} nodes: file locks do not hold across machines (two workers could "
                "run the same trial) and each node may see another file; give a database every "
                "node reaches: --storage postgresql://user:password@host/db"
            )
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        cuda = gpus and ctx.opts.device in ("auto", "cuda") or ctx.opts.device.startswith("cuda")
        resources = {"num_gpus": 1, "num_cpus": 1} if cuda else {"num_cpus": 1}
        task = ray.remote(tune_task).options(max_retries=0, **resources)
        refs = [task.remote(ctx, info, f"ray-w{i + 1}") for i in range(workers)]
        failed = 0
        for ref in refs:
            try:
                ray.get(ref)
            except ray.exceptions.RayError as e:
                failed += 1
                print(f"a tuning worker failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        return failed
    finally:
        ray.shutdown()
