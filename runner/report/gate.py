"""The robustness gate: compare stored results with the spec's ``gate:`` thresholds.

One call for commands: ``check_gate(spec, output_dir) -> (ok, messages)``; ``advrun run`` and
``advrun eval`` exit with :data:`runner.errors.EXIT_GATE` when ``ok`` is false. Runs are grouped
as model x recipe (x sweep values); a rule compares the mean over seeds (or every seed) of the
accuracy, or of its 95% CI lower bound, with its thresholds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.spec.gate import WORST_CASE, GateRule
from runner.store import RunMetrics, Store, group_label


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


@dataclass(frozen=True)
class Missing:
    """A run to judge that has no current results: who it is and why."""

    run_id: str
    why: str
    model: str | None = None
    recipe: str | None = None
    sweep: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return group_label(self.model, self.recipe, self.sweep, self.run_id)


def _selected_metrics(
    spec, root: Path, run_ids: Iterable[str] | None
) -> tuple[list[RunMetrics], list[Missing]]:
    """Metrics of the runs to judge, and stand-ins (model, recipe, why) for runs without them."""
    from runner.compile import compile_spec

    store = Store(root)
    plan = compile_spec(spec)
    by_id = {r.id: r for r in plan.runs}
    if run_ids is not None:
        ids = list(run_ids)
    else:  # the plan's runs that exist, plus `advrun eval` audits under the same settings
        ids = [r.id for r in plan.runs if store.run_dir(r).exists()]
        ids += [m.run_id for m in store.audits(plan.runs[0].eval_hash if plan.runs else None)]
    found: list[RunMetrics] = []
    missing: list[Missing] = []
    for rid in ids:
        m = store.read_metrics(rid)
        run = by_id.get(rid)
        names = {"model": run.model.name, "recipe": run.recipe.name} if run else {}
        stand_in = {"run_id": rid, "sweep": run.sweep if run else {}, **names}
        if m is None:
            st = store.read_status(rid).state or "not run"
            missing.append(Missing(**stand_in, why=f"run {rid} has no results (it is {st})"))
        elif run is not None and m.eval_hash != run.eval_hash:
            why = f"run {rid} was evaluated with other settings; run it again"
            missing.append(Missing(**stand_in, why=why))
        else:
            found.append(m)
    return found, missing


def _who(m: RunMetrics) -> str:
    """'seed N' for a trained run, the run id for an audit (no seed)."""
    return f"seed {m.seed}" if m.seed is not None else str(m.run_id)


def _applies(rule: GateRule, m: RunMetrics | Missing) -> bool:
    return (rule.models is None or m.model in rule.models) and (
        rule.recipes is None or m.recipe in rule.recipes
    )


def _value(m: RunMetrics, attack: str, statistic: str) -> float | None:
    """The row's ``accuracy`` or ``ci_low`` (the statistic a rule names)."""
    r = m.row(attack)
    return None if r is None else float(getattr(r, statistic))


def _compare(
    i: int,
    label: str,
    crit: str,
    runs: list[RunMetrics],
    values: list[float | None],
    bound: float,
    at_least: bool,
    over: str,
) -> list[GateCheck]:
    """Checks of one criterion: the mean over seeds, or every seed, against its bound."""
    need = f"{bound:.3f}" if at_least else f"<= {bound:.3f}"
    missing = [str(m.run_id) for m, v in zip(runs, values, strict=True) if v is None]
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


def _threshold_checks(
    i: int, rule: GateRule, label: str, runs: list[RunMetrics]
) -> list[GateCheck]:
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
        asr = [m.poisoning.asr if m.poisoning else None for m in runs]
        crit = "backdoor attack success rate"
        limit = rule.max_attack_success_rate
        out += _compare(i, label, crit, runs, asr, limit, False, rule.over_seeds)
    if rule.checklist != "ignore":
        bad_status = {"fail"} if rule.checklist == "no_fail" else {"fail", "warn"}
        need = "no failed check" if rule.checklist == "no_fail" else "every check passes"
        for m in runs:
            items = m.checklist
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
            bad = [c for c in items if c.status in bad_status]
            names = ", ".join(f"{c.check} ({c.status})" for c in bad)
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
        for s in missing:  # no results cannot pass a rule that covers the run
            if not s.model or _applies(rule, s):
                checks.append(GateCheck(i, s.group, "results", "", "missing", False, s.why))
        groups: dict[str, list[RunMetrics]] = {}
        for m in metrics:
            if _applies(rule, m):
                groups.setdefault(m.group, []).append(m)
        for label, runs in groups.items():
            runs.sort(key=lambda m: json.dumps(m.seed))
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
