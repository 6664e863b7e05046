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

from dataclasses import replace
from typing import TYPE_CHECKING

from runner import dist as distributed
from runner.errors import RunFailed
from runner.execute.launchers.base import Launcher
from runner.execute.step import ALREADY_DONE, Outcome, Tally, claim_run, execute, is_done

if TYPE_CHECKING:
    from runner.compile import Run
    from runner.dist import Dist
    from runner.execute.claim import Claim
    from runner.execute.options import Options
    from runner.store import Store


class TorchrunLauncher(Launcher):
    """Every selected run, one after another, each trained on all ranks (DDP)."""

    name = "torchrun"
    dist: Dist

    def start(self, opts: Options) -> None:
        """Join the process group torchrun describes in the environment."""
        d = distributed.init(opts.device)
        assert d is not None, "the torchrun launcher is chosen only under torchrun"
        self.dist, self.main = d, d.main

    def stop(self) -> None:
        distributed.shutdown(self.dist)

    def launch(self, store: Store, opts: Options, runs: list[Run]) -> list[Outcome]:
        d = self.dist
        opts = replace(opts, verbose=opts.verbose and d.main)  # rank 0 prints
        tally = Tally(runs, store, opts)
        for run in runs:
            # rank 0 claims for all ranks; the others follow its decision
            claim = self._decide(run, store, opts) if d.main else None
            decision = d.broadcast(claim if isinstance(claim, Outcome) else "run")
            if isinstance(decision, Outcome):
                tally.settle(decision)
                continue
            tally.progress.started(run, f"running on {d.world_size} ranks ({d.backend})")
            assert not isinstance(claim, Outcome)
            try:  # a lost claim stops rank 0 (and so torchrun): the ranks cannot go on apart
                tally.settle(execute(run, store, opts, claim, errors=(RunFailed,), dist=d))
            finally:
                if claim is not None:
                    claim.release()
        return tally.results()

    @staticmethod
    def _decide(run: Run, store: Store, opts: Options) -> Outcome | Claim:
        """Rank 0: the run's outcome when it is not run here, else its claim (held)."""
        if is_done(store, opts, run):
            return Outcome(run, "skipped", ALREADY_DONE)
        got = claim_run(run, store, opts)
        if isinstance(got, Outcome) and got.state == "busy":
            return Outcome(run, "failed", f"claimed by {got.message} (alive); not run here")
        return got
