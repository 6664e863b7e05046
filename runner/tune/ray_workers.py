"""``advrun tune --launcher ray --workers N``: the tuning workers as Ray tasks on the study's
storage (the Ray connection is the run launcher's, :mod:`runner.execute.launchers.ray`)."""

from __future__ import annotations

from typing import Any

from runner.errors import AdvrunError
from runner.execute.launchers.ray import connect


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
