"""The robustness gate: compare stored results with the spec's ``gate:`` thresholds.

One call for commands: ``check_gate(spec, output_dir) -> (ok, messages)``; ``advrun run`` and
``advrun eval`` exit with :data:`runner.errors.EXIT_GATE` when ``ok`` is false. Runs are grouped
as model x recipe (x sweep values); a rule compares the mean over seeds (or every seed) of the
accuracy, or of its 95% CI lower bound, with its thresholds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.fsio import read_json
from runner.spec.gate import WORST_CASE, GateRule


@dataclass
class GateCheck:
    """One threshold of one rule on one model x recipe group."""

    rule: int  # 1-based, as users count
    group: str  # model@recipe[sweep]
    criterion: str  # "clean accuracy", "pgd20 accuracy", "checklist", "results"
    threshold: str
    measured: str
    ok: bool
    detail: str = ""

    @property
    def message(self) -> str:
        head = "pass" if self.ok else "FAIL"
        text = f"{head} rule {self.rule} {self.group}: {self.criterion} {self.measured}"
        if self.criterion.endswith(("accuracy", "lower bound")) and self.measured[:1].isdigit():
            text += f" {'>=' if self.ok else '<'} {self.threshold}"
        elif self.threshold.startswith("<=") and self.measured[:1].isdigit():
            text += f" {'<=' if self.ok else '>'} {self.threshold[2:].strip()}"
        elif self.threshold:
            text += f"; needs {self.threshold}"
        return text + (f" ({self.detail})" if self.detail else "")


def group_label(metrics: dict[str, Any]) -> str:
    """model@recipe[sweep values]: the unit a gate rule (and the report's table) judges."""
    if not metrics.get("model"):
        return str(metrics.get("run_id", "?"))
    sweep = metrics.get("sweep") or {}
    suffix = (
        "["
        + ",".join(
            f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
            for k, v in sweep.items()
        )
        + "]"
        if sweep
        else ""
    )
    return f"{metrics.get('model')}@{metrics.get('recipe')}{suffix}"


def _selected_metrics(
    spec, root: Path, run_ids: Iterable[str] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Metrics of the runs to judge, and stand-ins (model, recipe, why) for runs without them."""
    from runner.compile import compile_spec
    from runner.store import Store

    store = Store(root)
    plan = compile_spec(spec)
    by_id = {r.id: r for r in plan.runs}
    if run_ids is not None:
        ids = list(run_ids)
    else:  # the plan's runs that exist, plus `advrun eval` audits under the same settings
        ids = [r.id for r in plan.runs if store.run_dir(r).exists()]
        ids += _audits(store, plan.runs[0].eval_hash if plan.runs else None)
    found: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    for rid in ids:
        m = read_json(store.run_dir(rid) / "metrics.json")
        run = by_id.get(rid)
        names = {"model": run.model.name, "recipe": run.recipe.name} if run else {}
        stand_in = {"run_id": rid, "sweep": run.sweep if run else {}, **names}
        if m is None:
            st = (read_json(store.run_dir(rid) / "status.json") or {}).get("state", "not run")
            missing.append({**stand_in, "why": f"run {rid} has no results (it is {st})"})
        elif run is not None and m.get("eval_hash") != run.eval_hash:
            why = f"run {rid} was evaluated with other settings; run it again"
            missing.append({**stand_in, "why": why})
        else:
            found.append(m)
    return found, missing


def _audits(store, eval_hash: str | None) -> list[str]:
    """Run ids of models audited with ``advrun eval`` under the given evaluation settings."""
    if not store.runs_dir.is_dir():
        return []
    ids = []
    for path in sorted(store.runs_dir.glob("*/metrics.json")):
        m = read_json(path)
        if m and m.get("kind") == "audit" and m.get("eval_hash") == eval_hash:
            ids.append(str(m.get("run_id", path.parent.name)))
    return ids


def _f(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _who(m: dict[str, Any]) -> str:
    """'seed N' for a trained run, the run id for an audit (no seed)."""
    return f"seed {m['seed']}" if m.get("seed") is not None else str(m.get("run_id"))


def _applies(rule: GateRule, m: dict[str, Any]) -> bool:
    return (rule.models is None or m.get("model") in rule.models) and (
        rule.recipes is None or m.get("recipe") in rule.recipes
    )


def _value(m: dict[str, Any], attack: str, statistic: str) -> float | None:
    for r in m.get("results", []):
        if r.get("attack") == attack:
            v = r.get(statistic)
            return None if v is None else float(v)
    return None


def _compare(
    i: int,
    label: str,
    crit: str,
    runs: list[dict],
    values: list[float | None],
    bound: float,
    at_least: bool,
    over: str,
) -> list[GateCheck]:
    """Checks of one criterion: the mean over seeds, or every seed, against its bound."""
    need = f"{bound:.3f}" if at_least else f"<= {bound:.3f}"
    missing = [str(m.get("run_id")) for m, v in zip(runs, values, strict=True) if v is None]
    if missing:
        return [
            GateCheck(
                i, label, crit, need, "not measured", False, "no result in " + ", ".join(missing)
            )
        ]
    if over == "mean":
        v = sum(values) / len(values)
        seeds = f"mean over {len(values)} seed{'s' if len(values) > 1 else ''}"
        points = [(v, seeds)]
    else:
        points = [(v, _who(m)) for m, v in zip(runs, values, strict=True)]
    return [
        GateCheck(i, label, crit, need, f"{v:.3f}", v >= bound if at_least else v <= bound, why)
        for v, why in points
    ]


def _threshold_checks(i: int, rule: GateRule, label: str, runs: list[dict]) -> list[GateCheck]:
    out = []
    wanted = dict(rule.min_accuracy)
    if rule.min_clean_accuracy is not None:
        wanted = {"clean": rule.min_clean_accuracy, **wanted}
    what = "accuracy" if rule.statistic == "accuracy" else "95% CI lower bound"
    for attack, minimum in wanted.items():
        name = "worst case" if attack == WORST_CASE else attack
        values = [_value(m, attack, rule.statistic) for m in runs]
        out += _compare(i, label, f"{name} {what}", runs, values, minimum, True, rule.over_seeds)
    if rule.max_attack_success_rate is not None:
        asr = [_f((m.get("poisoning") or {}).get("asr")) for m in runs]
        crit = "backdoor attack success rate"
        limit = rule.max_attack_success_rate
        out += _compare(i, label, crit, runs, asr, limit, False, rule.over_seeds)
    if rule.checklist != "ignore":
        bad_status = {"fail"} if rule.checklist == "no_fail" else {"fail", "warn"}
        need = "no failed check" if rule.checklist == "no_fail" else "every check passes"
        for m in runs:
            items = m.get("checklist")
            seed = _who(m)
            if not items:
                out.append(
                    GateCheck(
                        i,
                        label,
                        "checklist",
                        need,
                        "not run",
                        False,
                        f"{seed}: the evaluation checklist was not run",
                    )
                )
                continue
            bad = [c for c in items if c.get("status") in bad_status]
            names = ", ".join(f"{c.get('check')} ({c.get('status')})" for c in bad)
            out.append(
                GateCheck(
                    i,
                    label,
                    "checklist",
                    need,
                    f"{len(items) - len(bad)}/{len(items)} ok",
                    not bad,
                    f"{seed}: {names}" if bad else seed,
                )
            )
    return out


def evaluate_gate(spec, output_dir: str | Path, run_ids: Iterable[str] | None = None):
    """Every check of the spec's gate on the stored results: :class:`GateCheck` per threshold
    and :class:`~runner.report.baseline.BaselineCheck` per metric compared with the baseline
    (an AdvrunError when the baseline cannot be compared)."""
    from runner.report.baseline import baseline_checks, with_stored_baseline

    spec = with_stored_baseline(spec, Path(output_dir))
    gate = getattr(spec, "gate", None)
    if gate is None:
        return []
    metrics, missing = _selected_metrics(spec, Path(output_dir), run_ids)
    checks: list[GateCheck] = []
    for i, rule in enumerate(gate.rules, 1):
        for m in missing:  # no results cannot pass a rule that covers the run
            if not m.get("model") or _applies(rule, m):
                checks.append(
                    GateCheck(i, group_label(m), "results", "", "missing", False, m["why"])
                )
        groups: dict[str, list[dict]] = {}
        for m in metrics:
            if _applies(rule, m):
                groups.setdefault(group_label(m), []).append(m)
        for label, runs in groups.items():
            runs.sort(key=lambda m: json.dumps(m.get("seed")))
            checks += _threshold_checks(i, rule, label, runs)
    if gate.baseline is not None:
        checks += baseline_checks(gate, metrics, Path(output_dir))
    return checks


def check_gate(
    spec, output_dir: str | Path, run_ids: Iterable[str] | None = None
) -> tuple[bool, list[str]]:
    """(ok, messages): ok when the spec has no gate or every threshold holds."""
    from runner.report.baseline import with_stored_baseline

    checks = evaluate_gate(spec, output_dir, run_ids)
    if getattr(with_stored_baseline(spec, Path(output_dir)), "gate", None) is None:
        return True, []
    ok = all(c.ok for c in checks)
    msgs = [c.message for c in checks if not c.ok] + [c.message for c in checks if c.ok]
    if not checks:
        msgs = ["no run with results matched the gate's rules; nothing was checked"]
    return ok, msgs


def gate_json(checks: list[GateCheck]) -> list[dict[str, Any]]:
    return [{**asdict(c), "message": c.message} for c in checks]
