"""``advrun plan SPEC``: the runs a spec expands into, with their status (new/done/stale/...)."""

from __future__ import annotations

import argparse
import json
import sys

from runner.commands.common import add_spec_arguments, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _short(hp: dict) -> str:
    keys = ("epochs", "eps", "step_size", "steps", "beta", "ratio", "sigma", "samples")
    parts = [
        f"{k}={hp[k]:.4g}" if isinstance(hp[k], float) else f"{k}={hp[k]}"
        for k in keys
        if hp.get(k) is not None
    ]
    opt = hp.get("optimizer") or {}
    if opt:
        parts.append(f"{opt['name']}(lr={opt['lr']:g})")
    if hp.get("engine", "native") != "native":
        parts.append(f"engine={hp['engine']}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    loaded, plan, store = load(args)
    from runner.execute.claim import holder_of
    from runner.spec.certify import notes

    for note in notes(loaded.spec):
        print(f"note: {note}", file=sys.stderr)

    status = store.statuses(plan)
    for r in plan.runs:  # a live claim: some process is working on it now
        if status[r.id] != "done" and (h := holder_of(store.run_dir(r))) is not None:
            status[r.id] = f"running ({h})"
    if args.json:
        rows = [
            {
                "id": r.id,
                "model": r.model.name,
                "recipe": r.recipe.name,
                "seed": r.seed,
                "hyperparameters": r.hyperparameters,
                "status": status[r.id],
            }
            for r in plan.runs
        ]
        print(json.dumps(rows, indent=2))
        return 0
    header = ("id", "model", "recipe", "seed", "status", "hyperparameters")
    rows = [
        (
            r.id,
            r.model.name,
            r.recipe.name,
            str(r.seed),
            status[r.id],
            _short(r.hyperparameters),
        )
        for r in plan.runs
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    counts = {s: list(status.values()).count(s) for s in dict.fromkeys(status.values())}
    print(
        f"{len(plan.runs)} run(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f"; output {store.root}"
    )
    return 0
