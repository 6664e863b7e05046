"""Assemble the report's data (what results.json holds and the HTML shows) from output dirs."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError
from runner.report import audit, narrative, sections
from runner.report.certified import certified
from runner.report.collect import Experiment, as_stored, clean_json, load_experiment
from runner.report.suite import cascade_order, experiment_suite, split_attacks
from runner.report.tables import (
    CLEAN,
    WORST,
    attack_columns,
    column_scopes,
    groups,
    headline,
    mean_of,
    run_row,
)

SCHEMA = "advrun.report/1"


def _gate(exp: Experiment) -> dict[str, Any]:
    """Re-read the spec as run (text + overrides) and judge the stored results with its gate."""
    if exp.spec_text is None:
        return {"configured": False}
    from runner.report.gate import evaluate_gate, gate_json
    from runner.spec import load_spec

    try:
        loaded = load_spec(exp.root / "spec.yaml", list((exp.plan or {}).get("overrides", [])))
    except AdvrunError as e:
        return {"configured": True, "error": f"the stored spec no longer loads: {e}"}
    from runner.report.baseline import with_stored_baseline

    spec = with_stored_baseline(loaded.spec, exp.root)  # a --baseline of advrun eval/run
    if spec.gate is None:
        return {"configured": False}
    try:
        checks = evaluate_gate(spec, exp.root)
    except AdvrunError as e:  # e.g. a baseline on another threat model: refused, and said so
        return {"configured": True, "error": str(e), "baseline": spec.gate.baseline}
    return {
        "configured": True,
        "rules": [r.model_dump() for r in spec.gate.rules],
        "baseline": spec.gate.baseline,
        "max_drop": spec.gate.max_drop if spec.gate.baseline else None,
        "ok": all(c.ok for c in checks),
        "checks": gate_json(checks),
    }


def experiment_data(exp: Experiment, label: str) -> dict[str, Any]:
    """Everything the report shows of one experiment, as the template's data."""
    runs = [run_row(r) for r in exp.runs]
    first = next((r.run for r in exp.runs if r.run is not None), None)
    threat = as_stored(first.threat.to_json()) if first else None
    attacks = [as_stored(a.model_dump()) for a in first.attacks] if first else []
    columns = _columns(runs, first)
    rows = groups(runs, columns)
    paired = _paired_test(exp, runs, rows, columns)
    train = sections.training(runs)
    poison = sections.poisoning(runs, rows)
    check = sections.checklist(runs)
    gate = _gate(exp)
    best_by_column = _best_by_column(rows, columns)
    counts = dict(Counter(r["state"] for r in runs))
    suite, descriptions, audits = _suite(runs, threat, attacks, first, gate)
    return {
        "label": label,
        "name": exp.name,
        "dir": str(exp.root.resolve()),
        "description": exp.description,
        "threat": threat,
        "attacks": attacks,
        "attack_descriptions": descriptions,
        # advrun eval of published models: the audit's first screen, per model (else None)
        "audit": audits,
        "columns": columns,
        # what the worst case is over, and what was measured beside it (another norm or eps)
        "worst_case_attacks": suite["worst_case_attacks"],
        "off_threat_attacks": suite["off_threat_attacks"],
        "best_by_column": best_by_column,
        "column_scopes": column_scopes(runs),
        "run_states": counts,
        "runs": runs,
        "groups": rows,
        "summary": narrative.summary(
            rows,
            columns,
            runs,
            paired,
            check,
            gate,
            train,
            poison,
            suite,
            threat,
            audit.summary_items(audits) if audits is not None else None,
        ),  # fmt: skip
        "paired_test": paired,
        "training": train,
        "robustness_curves": sections.robustness_curves(exp, runs),
        "certified": certified(runs),
        "tuning": sections.tuning(exp.tune),
        "poisoning": poison,
        "checklist": check,
        "escalations": sections.escalations(runs),
        "gate": gate,
        "provenance": sections.provenance(exp, runs),
        "threat_model": narrative.threat_model(threat, attacks, runs, poison, audits is not None),
    }


def _columns(runs: list[dict[str, Any]], first: Any) -> list[str]:
    """The comparison table's attack columns: in the order the cascade ran them, then the
    attacks off the threat model (another norm or eps)."""
    if first is None:
        return attack_columns(runs, [], ())
    order = cascade_order(list(first.attacks), first.threat)
    off = tuple(a.name for a in first.attacks if not first.threat.covers(a))
    return attack_columns(runs, order, off)


def _suite(
    runs: list[dict[str, Any]],
    threat: dict[str, Any] | None,
    attacks: list[dict[str, Any]],
    first: Any,
    gate: dict[str, Any],
) -> tuple[dict[str, Any], list[str], list[dict[str, Any]] | None]:
    """The suite (worst-case and off-threat attacks, each run's own split), each attack in
    words, and the audited models' first screens when the experiment is an audit."""
    suite = experiment_suite(runs, threat)
    for r in runs:  # per run, with its own accuracies under the off-threat attacks
        inside, outside = split_attacks(r["results"], threat)
        r["worst_case_attacks"] = inside if WORST in r["results"] else []
        r["off_threat_attacks"] = outside
    pixel_range = threat.get("pixel_range") if threat else None
    descriptions = [narrative.describe_attack(a, pixel_range) for a in attacks]
    mode = first.eval.suite if first else None
    return suite, descriptions, audit.audited(runs, threat, suite, descriptions, mode, gate)


def _paired_test(
    exp: Experiment, runs: list[dict[str, Any]], rows: list[dict[str, Any]], columns: list[str]
) -> dict[str, Any] | None:
    """The paired test between the two groups ranked highest on the headline column."""
    col, _ = headline(columns)
    ranked = sorted(
        (g for g in rows if mean_of(g, col) is not None),
        key=lambda g: (mean_of(g, col), mean_of(g, CLEAN) or 0),
        reverse=True,
    )
    if len(ranked) < 2:
        return None
    return sections.paired_test(runs, exp, ranked[0]["group"], ranked[1]["group"])


def _best_by_column(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, str]:
    """Per column measured in more than one group, the group with the highest mean."""
    best = {}
    for c in columns:
        scored = [g for g in rows if mean_of(g, c) is not None]
        if len(scored) > 1:
            best[c] = max(scored, key=lambda g: mean_of(g, c))["group"]
    return best


def _labels(exps: list[Experiment]) -> list[str]:
    """Experiment names, made unique with as much of their directory path as it takes."""
    names = [e.name for e in exps]
    paths = [e.root.resolve() for e in exps]
    labels = list(names)
    for depth in range(1, 1 + max(len(p.parts) for p in paths)):
        if len(set(labels)) == len(labels):
            break
        labels = [
            n if names.count(n) == 1 else f"{n} ({'/'.join(p.parts[-depth:])})"
            for n, p in zip(names, paths, strict=True)
        ]
    return labels


def build(dirs: list[str | Path]) -> dict[str, Any]:
    """The whole report for one or several output directories, as JSON-ready data."""
    from runner.provenance import versions

    exps = [load_experiment(d) for d in dirs]
    data = [experiment_data(e, lab) for e, lab in zip(exps, _labels(exps), strict=True)]
    threats = {(str((d["threat"] or {}).get("norm")), (d["threat"] or {}).get("eps")) for d in data}
    columns = list(dict.fromkeys(c for d in data for c in d["columns"] if c != "worst_case"))
    columns += ["worst_case"] if any("worst_case" in d["columns"] for d in data) else []
    scopes = {k: v for d in reversed(data) for k, v in d["column_scopes"].items()}
    from runner.report.releases import releases

    return clean_json(
        {
            "schema": SCHEMA,
            "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "generator": {"advrun": versions().get("advrun"), "python": versions().get("python")},
            "experiments": data,
            # every experiment an audit: training, tuning and poisoning sections cannot apply
            "audit_only": all(d["audit"] for d in data),
            "releases": releases(data),  # the time series of releases of one model
            "comparison": {
                "columns": columns,
                "scopes": scopes,
                "comparable": len(threats) <= 1,
                "note": None
                if len(threats) <= 1
                else "the experiments use different threat models: compare robust accuracies "
                "only between rows with the same norm and eps",
            },
        }
    )
