"""The experiment's shared files, rebuilt from the run directories under the experiment lock.

Several processes may share one output directory (``--jobs``, a colleague's ``advrun run``, Ray
tasks). Each rebuilds ``plan.json``, ``results.csv``/``.parquet``, ``curves.*``, ``report.html``,
``results.json`` and the model cards from what the run directories hold *now*, one process at a
time, so the last rebuild includes every finished run and no table is left missing one.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner import faults
from runner.compile import Plan
from runner.execute import results
from runner.execute.claim import locked
from runner.fsio import write_json, write_text
from runner.report.hooks import gate_exit_code, write_default_report
from runner.spec import LoadedSpec
from runner.store import Store

LOCK = ".lock"  # OUT/.lock/claim.json while a process rewrites the shared files


def write_plan(loaded: LoadedSpec, plan: Plan, store: Store) -> None:
    """OUT/spec.yaml and OUT/plan.json: the spec as written, its hash, overrides, run ids."""
    store.root.mkdir(parents=True, exist_ok=True)
    with locked(store.root / LOCK):
        write_text(store.root / "spec.yaml", loaded.text)
        write_json(
            store.root / "plan.json",
            {
                "spec_sha256": loaded.sha256,
                "overrides": list(loaded.overrides),
                "runs": [r.id for r in plan.runs],
            },
        )


def write_results(plan: Plan, store: Store, report: bool = True):
    """Results, curves and (unless ``report`` is False) the report; returns the results table."""
    with locked(store.root / LOCK):
        df = results.collect(plan, store)
        results.write(df, store.root, between=lambda: faults.reached("results"))
        results.write_curves(plan, store)
        results.write_certified(plan, store)
        if report:
            path = write_default_report(store.root, midway=lambda: faults.reached("report"))
            if path is not None:
                print(f"report: {path}")
    return df


def gate(spec, store: Store, run_ids: Iterable[str] | None) -> int:
    return gate_exit_code(spec, store.root, run_ids)
