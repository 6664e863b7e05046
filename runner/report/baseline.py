"""The gate against a baseline: is the new model no less accurate than the last accepted release?

Each new run (or audit) is paired with the baseline's run of the same model x recipe and compared on
the same test examples: per metric of ``gate.max_drop`` (``clean``, ``worst_case`` or an attack),
the accuracy difference with a paired bootstrap interval and the exact McNemar test of
:mod:`runner.stats`. A drop larger than allowed fails the gate only when McNemar says it is not
noise (p < ``gate.significance``); a larger drop within noise passes and says so. A baseline
evaluated on other data, another threat model or another attack suite is refused (an
:class:`~runner.errors.AdvrunError` naming what differs): such a comparison means nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.compile import Audit, Run
from runner.errors import AdvrunError
from runner.fsio import read_json, write_json
from runner.spec.gate import DEFAULT_MAX_DROP, WORST_CASE
from runner.store import METRICS_FILE, MODEL_CARD_FILE, RunDir, RunMetrics, Store

GATE_FILE = "gate.json"  # a --baseline given on the command line, kept for `advrun report`


@dataclass
class Release:
    """One evaluated run of the baseline (or of the new output)."""

    dir: Path
    metrics: RunMetrics
    run: Run | Audit | None

    @property
    def label(self) -> str:
        return self.metrics.group

    @classmethod
    def read(cls, d: RunDir, metrics: RunMetrics | None = None) -> Release | None:
        """The evaluated run in ``d`` (None without results); its run.json must be readable."""
        metrics = metrics if metrics is not None else d.read_metrics()
        if metrics is None or not metrics.results:
            return None
        return cls(d.path, metrics, d.read_run())

    def examples(self):
        import pandas as pd

        path = self.dir / "examples.parquet"
        if not path.exists():
            raise AdvrunError(
                f"baseline {self.dir} has no examples.parquet: the paired test needs the "
                "per-example outcomes; keep the whole run directory of a release"
            )
        return pd.read_parquet(path, columns=["example", "attack", "label", "correct"])


def load_baseline(path: str | Path) -> list[Release]:
    """The evaluated runs of a baseline: an output directory, a run directory or a model card."""
    p = Path(path)
    if p.is_file() and p.name.endswith(".json"):
        p = p.parent  # runs/<run>/model_card.json: its run directory
    if not p.exists():
        raise AdvrunError(
            f"baseline {path}: no such file or directory; give the output directory (or a "
            f"runs/<run>/{MODEL_CARD_FILE}) of the last accepted release"
        )
    if RunDir(p).has_metrics():  # a run directory
        found = [r for r in [Release.read(RunDir(p))] if r]
    else:
        found = [r for d in Store(p).run_dirs() if (r := Release.read(d))]
    if not found:
        raise AdvrunError(f"baseline {path}: no evaluated run ({METRICS_FILE}) found in it")
    return found


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Dotted keys at which two JSON values differ (first few)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if a == b else [f"{where or 'value'} {json.dumps(b)} -> {json.dumps(a)}"]


def refuse_unless_comparable(new: Release, base: Release) -> None:
    """Same data, threat model and attack suite, or an AdvrunError naming what differs."""
    problems = []
    dn, db = new.metrics.data_sha256, base.metrics.data_sha256
    if dn != db:
        problems.append(f"data hash {str(db)[:12]} (baseline) != {str(dn)[:12]} (new)")
    tn, tb = _threat(new), _threat(base)
    if tn != tb:
        problems.append("threat model: " + "; ".join(_differences(tn or {}, tb or {})[:3]))
    an, ab = _attacks(new), _attacks(base)
    if set(an) != set(ab):
        only_new, only_base = sorted(set(an) - set(ab)), sorted(set(ab) - set(an))
        parts = [f"only in the new suite: {', '.join(only_new)}"] if only_new else []
        parts += [f"only in the baseline's: {', '.join(only_base)}"] if only_base else []
        problems.append("attack suite: " + "; ".join(parts))
    else:
        for name in an:
            diff = _differences(an[name], ab[name])
            if diff:
                problems.append(f"attack {name}: " + "; ".join(diff[:3]))
    if problems:
        raise AdvrunError(
            f"the baseline {base.dir} is not comparable with {new.label} ({new.dir.name}): "
            + " | ".join(problems)
            + "; compare releases evaluated on the same data, threat model and attack suite"
        )


def _threat(r: Release) -> dict[str, Any] | None:
    return r.run.threat.to_json() if r.run is not None else None


def _attacks(r: Release) -> dict[str, dict[str, Any]]:
    """The suite's attacks by name, with every setting (as run.json holds them)."""
    return {a.name: a.model_dump() for a in r.run.attacks} if r.run is not None else {}


def match(new: Release, baseline: list[Release]) -> Release:
    """The baseline run for a new one: the only one, else the same model x recipe (and seed)."""
    if len(baseline) == 1:
        return baseline[0]
    same = [b for b in baseline if b.label == new.label]
    if not same:
        raise AdvrunError(
            f"the baseline has no run of {new.label}; it has: "
            + ", ".join(sorted({b.label for b in baseline}))
        )
    return next((b for b in same if b.metrics.seed == new.metrics.seed), same[0])


def compare(new: Release, base: Release, metric: str, n_boot: int = 1000) -> dict[str, Any]:
    """Paired comparison of one metric: accuracies, difference, its interval, McNemar."""
    from runner.stats import compare_runs, paired_difference

    en, eb = new.examples(), base.examples()
    try:
        compare_runs(en, eb, attack=metric)  # same examples and labels, or ValueError
    except ValueError as e:
        raise AdvrunError(
            f"the baseline {base.dir} and {new.dir.name} were not evaluated on the same test "
            f"examples ({e}); use the same data split and eval.n"
        ) from None
    a = en[en["attack"] == metric].sort_values("example")["correct"].to_numpy(bool)
    b = eb[eb["attack"] == metric].sort_values("example")["correct"].to_numpy(bool)
    if a.size == 0:
        raise AdvrunError(f"{new.dir.name} has no per-example outcomes for '{metric}'")
    res = paired_difference(a, b, n_boot=n_boot)
    return {"new": float(a.mean()), "baseline": float(b.mean()), "n": int(a.size), **res}


@dataclass
class BaselineCheck:
    """One metric of one new run against its baseline (a row of the report's gate section)."""

    rule: str
    group: str
    criterion: str
    threshold: str
    measured: str
    ok: bool
    detail: str
    baseline_dir: str
    baseline_run: str
    metric: str
    baseline: float
    new: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    max_drop: float
    significance: float
    verdict: str  # pass | pass (within noise) | fail

    @property
    def message(self) -> str:
        head = "pass" if self.ok else "FAIL"
        return (
            f"{head} baseline {self.group}: {self.criterion} {self.new:.3f} vs {self.baseline:.3f} "
            f"({100 * self.diff:+.1f} points, 95% CI {100 * self.ci_low:+.1f} to "
            f"{100 * self.ci_high:+.1f}; allowed drop {100 * self.max_drop:.1f}): {self.detail}"
        )


def baseline_checks(gate, new_runs: list[RunMetrics], root: Path) -> list[BaselineCheck]:
    """Every max_drop metric of every new run against its baseline run."""
    baseline = load_baseline(gate.baseline)
    store = Store(root)
    checks = []
    for m in new_runs:
        d = store.at(m.run_id)
        new = Release(d.path, m, d.read_run())
        base = match(new, baseline)
        refuse_unless_comparable(new, base)
        names = {r.attack for r in m.results}
        for metric, allowed in gate.max_drop.items():
            if metric not in names:  # the default worst_case of a spec without attacks
                if metric == WORST_CASE and "max_drop" not in gate.model_fields_set:
                    continue
                raise AdvrunError(f"{new.label} has no '{metric}' result to compare")
            checks.append(_check(gate, new, base, metric, allowed))
    return checks


def _verdict(c: dict[str, Any], allowed: float, significance: float) -> tuple[str, bool, str]:
    """(verdict, ok, detail) of one comparison: no drop beyond ``allowed``, a larger drop within
    noise (McNemar p >= ``significance``), or a real drop."""
    drop = -c["diff"]
    if drop <= allowed + 1e-12:
        return "pass", True, "no drop" if drop <= 0 else "drop within the allowed amount"
    if not c["p_value"] < significance:
        return "pass (within noise)", True, (
            f"the drop exceeds the allowed amount but is within noise (McNemar p = "
            f"{c['p_value']:.3f} >= {significance:g}, {c['only_a']} examples only "
            f"the new model gets right, {c['only_b']} only the baseline); more test "
            "examples would decide"
        )  # fmt: skip
    return "fail", False, (
        f"a real drop (McNemar p = {c['p_value']:.2g} < {significance:g}; "
        f"{c['only_b']} examples only the baseline gets right, {c['only_a']} only "
        "the new model)"
    )  # fmt: skip


def _check(gate, new: Release, base: Release, metric: str, allowed: float) -> BaselineCheck:
    """One metric of one new run against its baseline run."""
    c = compare(new, base, metric)
    verdict, ok, detail = _verdict(c, allowed, gate.significance)
    name = "worst case" if metric == WORST_CASE else metric
    return BaselineCheck(
        rule="baseline",
        group=new.label,
        criterion=f"{name} accuracy",
        threshold=f"drop <= {allowed:.3f}",
        measured=f"{c['new']:.3f} (baseline {c['baseline']:.3f})",
        ok=ok,
        detail=detail,
        baseline_dir=str(Path(gate.baseline).resolve()),
        baseline_run=str(base.metrics.run_id or base.dir.name),
        metric=metric,
        baseline=c["baseline"],
        new=c["new"],
        diff=c["diff"],
        ci_low=c["ci_low"],
        ci_high=c["ci_high"],
        p_value=c["p_value"],
        n=c["n"],
        max_drop=allowed,
        significance=gate.significance,
        verdict=verdict,
    )


def with_stored_baseline(spec, root: Path):
    """The spec with the baseline a command line gave (``OUT/gate.json``) merged into its gate."""
    stored = read_json(Path(root) / GATE_FILE)
    if not stored:
        return spec
    return with_baseline(spec, stored["baseline"], stored.get("max_drop"))


def with_baseline(spec, baseline: str, max_drop: dict[str, float] | None = None):
    """``spec`` whose gate compares against ``baseline`` (a --baseline on the command line)."""
    from runner.spec.gate import GateSpec

    gate = spec.gate
    update: dict[str, Any] = {"baseline": str(Path(baseline).resolve())}
    if max_drop is not None:
        update["max_drop"] = max_drop
    if gate is None:
        gate = GateSpec(max_drop=max_drop or dict(DEFAULT_MAX_DROP))
        update.pop("max_drop", None)
    return spec.model_copy(update={"gate": gate.model_copy(update=update)})


def remember_baseline(root: Path, baseline: str | None) -> None:
    """Keep (or forget) a command-line ``--baseline`` in OUT/gate.json, for the gate and the
    report: the stored spec does not hold it."""
    path = Path(root) / GATE_FILE
    if baseline:
        write_json(path, {"baseline": str(Path(baseline).resolve()), "max_drop": None})
    else:
        path.unlink(missing_ok=True)
