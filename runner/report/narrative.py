"""Plain-words parts of the report: the summary, the threat model, MITRE ATLAS, limitations."""

from __future__ import annotations

from typing import Any

from runner.report.tables import CLEAN, WORST, headline, mean_of

NORMS = {"linf": "L∞", "l2": "L2"}

# MITRE ATLAS (atlas.mitre.org) identifiers, checked against ATLAS v5: adversarial training is
# one of the techniques of mitigation AML.M0003 "Model Hardening" (AML.M0001 is "Limit Model
# Artifact Release"); AML.T0015 was called "Evade ML Model" and AML.T0018 "Backdoor ML Model"
# in earlier releases.
ATLAS_MITIGATION = ("AML.M0003", "Model Hardening")
ATLAS_EVASION = [
    (
        "AML.T0015",
        "Evade AI Model",
        "test-time evasion: perturbed inputs make the model misclassify",
    ),
    ("AML.T0043", "Craft Adversarial Data", "the attack suite crafts the perturbed inputs"),
]
ATLAS_POISONING = [
    ("AML.T0020", "Poison Training Data", "a fraction of the training set carries a trigger"),
    ("AML.T0018", "Manipulate AI Model (backdoor)", "the trained model learns the backdoor"),
    ("AML.T0043.004", "Insert Backdoor Trigger", "triggered test images measure the backdoor"),
]


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def fmt_eps(eps: float | None, pixel_range: list[float] | None = None) -> str:
    """eps as written in papers: 0.03137 (8/255) on a [0, 1] pixel range."""
    if eps is None:
        return "n/a"
    text = f"{eps:.4g}"
    width = (pixel_range[1] - pixel_range[0]) if pixel_range else 1.0
    k = eps * 255
    if width == 1 and abs(k - round(k)) < 1e-6 and round(k) >= 1 and eps < 0.5:
        text += f" ({round(k)}/255)"
    return text


def describe_attack(a: dict[str, Any], pixel_range: list[float] | None) -> str:
    """e.g. 'pgd20: PGD, L∞ eps 0.1, 20 steps of 0.025, 1 restart, random start (ART)'."""
    skip = {"name", "kind", "norm", "eps", "batch_size", "engine"}
    parts = [f"{NORMS.get(a.get('norm'), a.get('norm'))} eps {fmt_eps(a.get('eps'), pixel_range)}"]
    if "steps" in a:
        step = a.get("step_size")
        parts.append(f"{a['steps']} steps" + (f" of {step:.4g}" if step is not None else ""))
    for k, v in a.items():
        if k in skip or k in ("steps", "step_size"):
            continue
        if isinstance(v, bool):
            if v:
                parts.append(k.replace("_", " "))
        elif v is not None:
            parts.append(f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    engine = {"art": "ART", "native": "advrun native"}.get(a.get("engine"), a.get("engine"))
    return f"{a.get('name')}: {str(a.get('kind', '')).upper()}, {', '.join(parts)}" + (
        f" ({engine})" if engine else ""
    )


def threat_model(
    threat: dict[str, Any] | None,
    attacks: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    poisoned: dict | None,
    audit: bool = False,
) -> dict[str, Any]:
    """The threat-model statement, the ATLAS mapping and the limitations of what was tested."""
    if not threat:
        return {"statement": "No run has been started: the threat model is not known yet."}
    pr = threat.get("pixel_range")
    norm = NORMS.get(threat.get("norm"), threat.get("norm"))
    eps = fmt_eps(threat.get("eps"), pr)
    statement = (
        f"An attacker who knows the model (white-box: architecture, weights and gradients) changes "
        f"each test input by at most eps = {eps} in the {norm} norm, keeping pixels in "
        f"[{pr[0]:g}, {pr[1]:g}], to make the model misclassify it. Robust accuracy is the "
        "fraction of test examples still classified correctly; the worst case counts an example "
        "as robust only if it is classified correctly clean and under every attack of the suite "
        "at this budget."
    )
    return {
        "statement": statement,
        "atlas": _atlas(runs, attacks, poisoned, audit),
        "limitations": _limitations(runs, attacks, poisoned, norm, eps, audit),
    }


def _atlas(
    runs: list[dict[str, Any]], attacks: list[dict[str, Any]], poisoned: dict | None, audit: bool
) -> list[dict[str, Any]]:
    """The MITRE ATLAS mitigation and techniques in play, and whether each was evaluated."""
    kinds = sorted({str(r["kind"]) for r in runs if r["kind"]})
    hardened = [k for k in kinds if k not in ("standard", "audit")]
    evidence = ("recipes: " + ", ".join(hardened)) if hardened else "no hardened recipe"
    if audit:
        evidence = "an audit of a published model: whatever hardening it had is what is measured"
    atlas = [
        {
            "id": ATLAS_MITIGATION[0],
            "name": ATLAS_MITIGATION[1],
            "type": "mitigation",
            "role": "adversarial training (training on perturbed examples)",
            "evaluated": bool(hardened) or audit,
            "evidence": evidence,
        }
    ]
    attacked = ", ".join(str(a.get("name")) for a in attacks) or "no attack run"
    atlas += [_technique(t, bool(attacks), attacked) for t in ATLAS_EVASION]
    setup = (
        ", ".join(f"{k} {v}" for k, v in poisoned["setup"].items() if v is not None)
        if poisoned
        else "no poisoning block in the spec"
    )
    atlas += [_technique(t, poisoned is not None, setup) for t in ATLAS_POISONING]
    return atlas


def _technique(technique: tuple[str, str, str], evaluated: bool, evidence: str) -> dict[str, Any]:
    tid, name, role = technique
    return {"id": tid, "name": name, "type": "technique", "role": role, "evaluated": evaluated,
            "evidence": evidence}  # fmt: skip


def _limitations(
    runs: list[dict[str, Any]],
    attacks: list[dict[str, Any]],
    poisoned: dict | None,
    norm: str,
    eps: str,
    audit: bool = False,
) -> list[str]:
    n = sorted({v["n"] for r in runs for v in r["results"].values() if v.get("n")})
    limits = [
        "Robust accuracy under a fixed attack suite is an upper bound on true robustness: a "
        "stronger or adaptive attack may lower it. Only the attacks listed were run.",
        f"Only the {norm} threat model at eps = {eps} was tested (other norms, larger budgets, "
        "physical or semantic changes are out of scope unless a robustness curve shows them).",
        "Numbers hold for this data set, its test split and the evaluated checkpoint; "
        + (f"{', '.join(map(str, n))} test examples per run" if n else "test size unknown")
        + " (see the 95% intervals).",
    ]
    if not any(r["checklist"] for r in runs):
        limits.append(
            "The evaluation checklist was not run: gradient masking (which inflates robust "
            "accuracy) was not ruled out."
        )
    if not any(a.get("kind") in ("square", "autoattack") for a in attacks):
        limits.append("No black-box or AutoAttack evaluation was part of the suite.")
    if audit:
        limits.append(
            "An audit measures the file as published: how it was trained, on what data "
            "(poisoning, backdoors) and how other training seeds would fare is not known to it."
        )
        return limits
    if poisoned is None:
        limits.append("Training-data poisoning was not evaluated.")
    seeds = sorted({r["seed"] for r in runs if r["results"]}, key=str)
    if len(seeds) < 2:
        limits.append("One training seed: the spread between seeds is unknown.")
    return limits


def summary(
    groups: list[dict[str, Any]],
    columns: list[str],
    runs: list[dict[str, Any]],
    paired: dict | None,
    checklist: dict | None,
    gate: dict | None,
    training: list[dict[str, Any]],
    poisoning: dict | None,
    suite: dict[str, Any] | None = None,
    threat: dict[str, Any] | None = None,
    audit_items: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The best defense, its clean-accuracy trade-off, what the worst case was over and what was
    measured beside it, checklist and gate outcome, in words. ``audit_items``: the experiment
    audits published models (:func:`runner.report.audit.summary_items`): each one's file and
    accuracies instead of a best defense."""
    col, col_name = headline(columns)
    suite = suite or {"worst_case_attacks": [], "off_threat_attacks": []}
    t = threat or {}
    col_name, long_name = _headline_names(col, col_name, suite, t)
    if audit_items is not None:
        best = groups[0] if len(groups) == 1 else None  # off-threat accuracies of the one model
        items = list(audit_items)
    else:
        items, best = _best_defense(groups, runs, col, long_name)
    items += _off_threat(suite["off_threat_attacks"], best, t.get("pixel_range"))
    items += _paired(paired)
    items += _checklist(checklist)
    items += _collapses(training)
    if poisoning:
        parts = [f"{r['group']} {pct(r['asr'])}" for r in poisoning["rows"]]
        items.append({"level": "info", "text": "Backdoor attack success rate: " + "; ".join(parts)})
        filters = [
            f"{r['group']}: {r['filter']['tp']} of {r['filter']['tp'] + r['filter']['fn']} poisons "
            f"removed with {r['filter']['fp']} clean examples (precision "
            f"{pct(r['filter']['precision'])}, recall {pct(r['filter']['recall'])})"
            for r in poisoning["rows"]
            if r.get("filter")
        ]
        if filters:
            items.append({"level": "info", "text": "Poisoning filters: " + "; ".join(filters)})
    items += _gate(gate)
    return {
        "items": items,
        "best": best["group"] if best and audit_items is None else None,
        "headline": col,
        "headline_name": col_name,
    }


Items = list[dict[str, str]]


def _headline_names(
    col: str | None, col_name: str, suite: dict[str, Any], t: dict[str, Any]
) -> tuple[str, str]:
    """The headline column's short and long names (the long one lists the attacks)."""
    long_name = col_name
    if col == WORST and suite["worst_case_attacks"]:
        names = suite["worst_case_attacks"]
        at = f"at {NORMS.get(t.get('norm'), t.get('norm'))} eps {fmt_eps(t.get('eps'), t.get('pixel_range'))}"
        n = len(names)
        col_name = f"worst case over {n} attack{'s' if n != 1 else ''} {at}"
        long_name = f"worst case over {', '.join(names)} {at}"
    return col_name, long_name


def _best_defense(
    groups: list[dict[str, Any]], runs: list[dict[str, Any]], col: str | None, long_name: str
) -> tuple[Items, dict[str, Any] | None]:
    """The most robust group and its trade-off against a baseline (or why there is none)."""
    measured = [g for g in groups if mean_of(g, col) is not None]
    if not any(r["results"] for r in runs):
        return [{"level": "warn", "text": "No run has results yet: nothing to compare."}], None
    if col is None:
        text = ("No attack was run (the spec's attacks list is empty): robustness was not "
                "measured; only clean accuracy is shown.")  # fmt: skip
        return [{"level": "warn", "text": text}], None
    if not measured:
        return [], None
    measured.sort(key=lambda g: (mean_of(g, col), mean_of(g, CLEAN) or 0), reverse=True)
    best = measured[0]
    cell = best["cells"][col]
    spread = f" ± {100 * cell['std']:.1f}" if cell["std"] is not None else ""
    items = [
        {
            "level": "good",
            "text": f"Best defense: {best['group']} (recipe kind {best['kind']}), robust "
            f"accuracy {pct(cell['mean'])}{spread} ({long_name}, {cell['seeds']} seed"
            f"{'s' if cell['seeds'] != 1 else ''}), clean accuracy "
            f"{pct(mean_of(best, CLEAN))}.",
        }
    ]
    others = [g for g in measured[1:] if g["model"] == best["model"]] or measured[1:]
    base = next((g for g in others if g["kind"] == "standard"), None) or (
        max(others, key=lambda g: mean_of(g, CLEAN) or 0) if others else None
    )
    if base is not None:
        dr = 100 * (mean_of(best, col) - mean_of(base, col))
        dc = 100 * ((mean_of(best, CLEAN) or 0) - (mean_of(base, CLEAN) or 0))
        trade = "costs" if dc < 0 else "keeps"
        items.append(
            {
                "level": "info",
                "text": f"Trade-off against {base['group']}: robust accuracy {dr:+.1f} "
                f"points; clean accuracy {dc:+.1f} points ({trade} clean accuracy).",
            }
        )
    return items, best


def _off_threat(
    attacks: list[dict[str, Any]], best: dict[str, Any] | None, pr: list[float] | None
) -> Items:
    if not attacks:
        return []
    parts = []
    for a in attacks:
        acc = mean_of(best, a["name"]) if best else None
        parts.append(
            f"{a['name']} ({NORMS.get(a['norm'], a['norm'])} eps {fmt_eps(a['eps'], pr)})"
            + (f" {pct(acc)}" if acc is not None else "")
        )
    text = (
        "Outside the threat model, reported beside the worst case and not in it"
        + (f" (accuracy of {best['group']})" if best else "")
        + ": "
        + "; ".join(parts)
        + "."
    )
    return [{"level": "info", "text": text}]


def _paired(paired: dict | None) -> Items:
    if not (paired and "p_value" in paired):
        return []
    sig = paired["p_value"] < 0.05
    text = (
        f"Paired test (exact McNemar, seed {paired['seed']}, the same "
        f"{paired['n']} test examples, worst-case correctness): {paired['a']} vs "
        f"{paired['b']}, p = {paired['p_value']:.3g}; "
        + ("the difference is significant at 5%." if sig else "not significant at 5%.")
    )
    return [{"level": "info", "text": text}]


def _checklist(checklist: dict | None) -> Items:
    """The checklist's failures (the first 8) and warnings, or that it passed or was not run."""
    if checklist is None:
        text = "The evaluation checklist was not run, so gradient masking was not ruled out."
        return [{"level": "warn", "text": text}]
    bad = [
        (
            "bad" if c.get("status") == "fail" else "warn",
            f"{r['id']}: {name} {c.get('status')}"
            + (f" — {c.get('detail')}" if c.get("detail") else ""),
        )
        for r in checklist["runs"]
        for name, c in r["checks"].items()
        if c.get("status") in ("fail", "warn")
    ]
    fails = [b for level, b in bad if level == "bad"]
    warns = [b.split(" — ")[0] for level, b in bad if level == "warn"]
    items: Items = []
    if not bad:
        items.append({"level": "good", "text": "Every evaluation-checklist check passed."})
    items += [{"level": "bad", "text": f"Checklist failure: {b}."} for b in fails[:8]]
    if len(fails) > 8:
        items.append({"level": "bad", "text": f"… and {len(fails) - 8} more checklist failures."})
    if warns:
        more = "; …" if len(warns) > 8 else ""
        text = f"Checklist warnings ({len(warns)}): " + "; ".join(warns[:8]) + more + "."
        items.append({"level": "warn", "text": text})
    return items


def _collapses(training: list[dict[str, Any]]) -> Items:
    """Runs whose validation robust accuracy collapsed (catastrophic overfitting)."""
    return [
        {
            "level": "bad",
            "text": f"{r['id']}: validation robust accuracy collapsed from "
            f"{pct(c['from'])} (epoch {c['from_epoch']}) to {pct(c['to'])} at epoch "
            f"{c['epoch']}: catastrophic overfitting.",
        }
        for g in training
        for r in g["runs"]
        if (c := r["collapse"])
    ]


def _gate(gate: dict | None) -> Items:
    if not (gate and gate.get("configured")):
        return []
    if gate.get("error"):
        return [{"level": "warn", "text": f"Gate not evaluated: {gate['error']}"}]
    if gate["ok"]:
        return [{"level": "good", "text": f"Gate passed ({len(gate['checks'])} checks)."}]
    failed = [c["message"] for c in gate["checks"] if not c["ok"]]
    text = (f"Gate FAILED: {len(failed)} of {len(gate['checks'])} checks failed (details under "
            "Robustness gate).")  # fmt: skip
    return [{"level": "bad", "text": text}] + [
        {"level": "bad", "text": f"Gate: {m.removeprefix('FAIL ')}"} for m in failed[:5]
    ]
