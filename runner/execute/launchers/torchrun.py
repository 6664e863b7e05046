"""One run on several processes or GPUs: ``torchrun --nproc_per_node=K -m runner run SPEC``.

Each selected run is trained with DistributedDataParallel: the seeded permutation of an epoch is
the same on every rank and each global batch (the spec's ``batch_size``) is split into one shard
per rank; each rank crafts the adversarial examples of its own shard (the attack inside training
stays per rank) and only the weight gradients are all-reduced. Validation and the evaluation
suite run on rank 0 (the others wait); only rank 0 claims the run and writes the run store, and
its checkpoints are those of a single-process run, so a run started under torchrun can be resumed
by either. Backend nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

from runner.dist import Dist


def execute_distributed(store, opts, runs: list, dist: Dist) -> list:
    """Every selected run, one after another, each trained on all ranks (DDP)."""
    from runner.errors import RunFailed
    from runner.execute.claim import Claim
    from runner.execute.launchers.serial import Outcome
    from runner.execute.progress import Progress
    from runner.execute.run import execute_run

    progress = Progress(runs, opts.verbose and dist.main)
    outcomes = []
    for run in runs:
        claim, decision = None, "run"
        if dist.main:  # rank 0 claims for all ranks; the others follow its decision
            if not opts.force and store.status(run) == "done":
                decision = "done"
            else:
                claim = Claim(store.run_dir(run), run.id)
                holder = claim.try_acquire()
                if holder is not None:
                    decision, claim = f"claimed by {holder} (alive); not run here", None
        decision = dist.broadcast(decision)
        if decision == "done":
            outcomes.append(Outcome(run, "skipped", "already done"))
            progress.skipped(run, "done, skipped")
            continue
        if decision != "run":
            outcomes.append(Outcome(run, "failed", decision))
            progress.failed(run, decision)
            continue
        progress.started(run, f"running on {dist.world_size} ranks ({dist.backend})")
        try:
            m = execute_run(run, store, opts, claim=claim, dist=dist)
            outcomes.append(Outcome(run, "done"))
            if dist.main:
                progress.finished(run, m)
        except RunFailed as e:
            outcomes.append(Outcome(run, "failed", str(e)))
            progress.failed(run, str(e))
        finally:
            if claim is not None:
                claim.release()
    progress.close()
    return outcomes
