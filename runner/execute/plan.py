"""Execute a plan: every not-yet-done run, one after another in this process."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from runner.compile import Plan, Run
from runner.errors import AdvrunError, RunFailed
from runner.execute.options import Options
from runner.execute.run import execute_run
from runner.execute.store import Store


@dataclass
class Outcome:
    run: Run
    state: str  # done | skipped | failed
    message: str = ""


def execute_plan(
    plan: Plan, store: Store, opts: Options, runs: list[Run] | None = None
) -> list[Outcome]:
    """Run every not-yet-done run of the plan; a failed run does not stop the others."""
    outcomes = []
    todo = runs if runs is not None else plan.runs
    for i, run in enumerate(todo, 1):
        status = "new" if opts.force else store.status(run)
        if status == "done":
            outcomes.append(Outcome(run, "skipped", "already done"))
            if opts.verbose:
                print(f"[{i}/{len(todo)}] {run.slug}: done, skipped")
            continue
        if opts.verbose:
            print(f"[{i}/{len(todo)}] {run.slug}: {status} -> running", flush=True)
        try:
            m = execute_run(run, store, opts)
        except RunFailed as e:
            outcomes.append(Outcome(run, "failed", str(e)))
            print(f"[{i}/{len(todo)}] {run.slug}: FAILED: {e}", file=sys.stderr)
            continue
        except AdvrunError:
            raise
        acc = {r["attack"]: r["accuracy"] for r in m["results"]}
        outcomes.append(Outcome(run, "done"))
        if opts.verbose:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in acc.items())
            print(
                f"[{i}/{len(todo)}] {run.slug}: {shown} ({m['train_seconds']:.1f}s train)",
                flush=True,
            )
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return outcomes
