"""Which attacks formed a run's worst case, and which were run outside the threat model.

The worst case is computed over the attacks *at* the threat model only (same norm, eps not larger;
:meth:`runner.compile.Threat.covers`); the others (an L2 attack under an Linf threat, a larger eps)
run on their own and are reported beside it. Cards, ``results.json`` and the report summary name
both lists from here, so none of them can credit the worst case with an attack it did not include.
"""

from __future__ import annotations

from typing import Any

from runner.report.tables import CLEAN, WORST

IN_SUITE = ("cascade", "independent")
OFF_THREAT = "off_threat"


def _off_threat(row: dict[str, Any], threat: dict[str, Any]) -> bool:
    """From the row's scope; rows without one (older results) from their norm and eps."""
    scope = row.get("scope")
    if scope:
        return scope == OFF_THREAT
    eps, t_eps = row.get("eps"), threat.get("eps")
    if row.get("norm") != threat.get("norm"):
        return True
    return eps is not None and t_eps is not None and float(eps) > float(t_eps) * (1 + 1e-9)


def split_attacks(
    results: dict[str, dict[str, Any]], threat: dict[str, Any] | None
) -> tuple[list[str], list[dict[str, Any]]]:
    """(names of the attacks in the worst case, off-threat attacks as {name, kind, norm, eps,
    accuracy}) of one run's results, in the order the results list them."""
    threat = threat or {}
    inside: list[str] = []
    outside: list[dict[str, Any]] = []
    for name, row in results.items():
        if name in (CLEAN, WORST) or row.get("scope") in ("clean", "worst_case"):
            continue
        if _off_threat(row, threat):
            outside.append(
                {
                    "name": name,
                    "kind": row.get("kind"),
                    "norm": row.get("norm"),
                    "eps": row.get("eps"),
                    "accuracy": row.get("accuracy"),
                }
            )
        else:
            inside.append(name)
    return inside, outside


def cascade_order(attacks: list[Any], threat: Any) -> list[str]:
    """The attacks' names in the order the suite ran them: those at the threat model cheap to
    expensive (spec order among equals, as :func:`runner.eval.cascade.plan_stages`), then the
    others."""
    from runner.catalog import ATTACKS

    inside = [a for a in attacks if threat.covers(a)]
    inside.sort(key=lambda a: ATTACKS.load(a.kind)(a).cost())
    return [a.name for a in inside] + [a.name for a in attacks if not threat.covers(a)]


def experiment_suite(runs: list[dict[str, Any]], threat: dict[str, Any] | None) -> dict[str, Any]:
    """The experiment's worst-case attacks and its off-threat attacks (name, kind, norm, eps),
    from the first run with results (every run of an experiment runs the same suite)."""
    for r in runs:
        if r["results"]:
            inside, outside = split_attacks(r["results"], threat)
            return {
                "worst_case_attacks": inside if WORST in r["results"] else [],
                "off_threat_attacks": [{k: v for k, v in a.items() if k != "accuracy"}
                                       for a in outside],
            }  # fmt: skip
    return {"worst_case_attacks": [], "off_threat_attacks": []}
