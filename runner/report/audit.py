"""The report of an audit (``advrun eval`` of published models): its first screen answers the
auditor's questions, per audited model: which file (path, SHA-256, format, what it held and what
was unwrapped), which model, the threat model, the suite as run, clean and robust accuracy with
their 95% intervals, the checklist and the gate's verdict. Training-oriented wording ("best
defense", recipes, seeds) and sections that cannot apply to an audit are left out.
"""

from __future__ import annotations

from typing import Any

from runner.report.narrative import NORMS, fmt_eps, pct
from runner.report.tables import CLEAN, WORST

FORMATS = {"torch-zip": "torch zip archive", "torch-legacy": "torch legacy serialization",
           "safetensors": "safetensors"}  # fmt: skip


def is_audit(runs: list[dict[str, Any]]) -> bool:
    """Every run of the experiment is an audit (``advrun eval`` into its own directory)."""
    return bool(runs) and all(r.get("audit") for r in runs)


def _accuracy(run: dict[str, Any], attack: str) -> dict[str, Any] | None:
    row = run["results"].get(attack)
    if not row:
        return None
    return {k: row.get(k) for k in ("accuracy", "ci_low", "ci_high", "n")}


def _file(run: dict[str, Any]) -> dict[str, Any]:
    """The audited file: its provenance record, or what an older audit stored (path, hash)."""
    prov = run.get("checkpoint_provenance")
    if prov:
        return {**prov, "format_short": FORMATS.get(prov.get("format"), prov.get("format"))}
    return {"path": run.get("checkpoint"), "sha256": run.get("checkpoint_sha256"),
            "format_short": None if run.get("checkpoint") else "none: a model factory"}  # fmt: skip


def audited(
    runs: list[dict[str, Any]],
    threat: dict[str, Any] | None,
    suite: dict[str, Any],
    descriptions: list[str],
    mode: str | None,
    gate: dict[str, Any],
) -> list[dict[str, Any]] | None:
    """One entry per audited model: everything its first screen shows (None: not an audit)."""
    if not is_audit(runs):
        return None
    t = threat or {}
    worst = suite.get("worst_case_attacks") or []
    at = f"{NORMS.get(t.get('norm'), t.get('norm'))} eps {fmt_eps(t.get('eps'), t.get('pixel_range'))}"
    out = []
    for r in runs:
        if not r["results"]:
            continue
        mine = r.get("worst_case_attacks") or worst  # with the rungs its escalation added
        robust_name = f"worst case over {', '.join(mine)} at {at}" if mine else None
        esc = r.get("escalation") or {}
        checks = r["checklist"] or []
        counts = {s: sum(c.get("status") == s for c in checks) for s in ("pass", "warn", "fail")}
        out.append({
            "id": r["id"],
            "model": r["model"],
            "arch": r["arch"],
            "kwargs": r.get("kwargs") or {},
            "normalize": r.get("normalize"),
            "file": _file(r),
            "clean": _accuracy(r, CLEAN),
            "robust": _accuracy(r, WORST),
            "robust_name": robust_name,
            "threat": f"{at}, pixels in [{', '.join(f'{v:g}' for v in t.get('pixel_range') or [])}]",
            "data": (r.get("data") or {}).get("dataset"),
            "data_sha256": r.get("data_sha256"),
            "suite_mode": mode,
            "suite": descriptions,
            # the suite as it ran: the rungs its escalation added, and why, in words
            "escalated": [f"{g['attack']}: {g['kind']}, {g['budget']} (escalated; broke "
                          f"{g['broken']})" for g in esc.get("rungs", [])],
            "escalation": r.get("escalation_text"),
            "checklist": {"run": bool(checks), **counts,
                          "failing": [f"{c.get('check')}: {c.get('detail')}" for c in checks
                                      if c.get("status") in ("fail", "warn")]},
            "gate": _verdict(gate, r["group"]),
            "device": r.get("device"),
            "finished": r.get("finished"),
        })  # fmt: skip
    return out


def _verdict(gate: dict[str, Any], group: str) -> dict[str, Any]:
    """The gate's verdict on this model's group: none, not evaluated, passed or FAILED."""
    if not gate.get("configured"):
        return {"verdict": "none", "detail": "the spec has no gate: block"}
    if gate.get("error"):
        return {"verdict": "not evaluated", "detail": gate["error"]}
    mine = [c for c in gate.get("checks", []) if c.get("group") in (group, None)]
    checks = mine or gate.get("checks", [])
    ok = all(c.get("ok") for c in checks)
    failed = [c.get("message") for c in checks if not c.get("ok")]
    return {"verdict": "passed" if ok else "FAILED", "detail": f"{len(checks)} checks",
            "failed": failed}  # fmt: skip


def summary_items(audits: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One finding per audited model, in words: file, robust and clean accuracy."""
    items = []
    for a in audits:
        f, rob, cl = a["file"], a["robust"], a["clean"]
        what = f"{a['model']} ({a['arch']})"
        src = f" from {f['path']}" if f.get("path") else ""
        fmt = f" ({f['format_short']}, sha256 {str(f['sha256'])[:12]}…)" if f.get("sha256") else ""
        robust = (
            f"robust accuracy {_interval(rob)} ({a['robust_name']})"
            if rob and a["robust_name"]
            else "robust accuracy not measured (no attack at the threat model)"
        )
        clean = f"clean accuracy {_interval(cl)}" if cl else "clean accuracy not measured"
        n = f", {cl['n']} test examples" if cl and cl.get("n") else ""
        items.append({"level": "good" if rob else "warn",
                      "text": f"Audited {what}{src}{fmt}: {robust}, {clean}{n}."})  # fmt: skip
    return items


def _interval(x: dict[str, Any]) -> str:
    if x.get("ci_low") is None:
        return pct(x.get("accuracy"))
    return f"{pct(x.get('accuracy'))} (95% CI {pct(x['ci_low'])}–{pct(x['ci_high'])})"
