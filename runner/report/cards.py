"""Model cards: one per run (:class:`runner.store.ModelCard`), in the spirit of RobustBench's
model entries, built from the report's data."""

from __future__ import annotations

from typing import Any

from runner.report.narrative import fmt_eps
from runner.report.suite import split_attacks
from runner.report.tables import CLEAN, WORST
from runner.spec.attacks import uses_eot
from runner.store import ModelCard
from runner.store.card import CARD_SCHEMA

THREAT_MODELS = {"linf": "Linf", "l2": "L2"}  # RobustBench's names


def _acc(run: dict[str, Any], attack: str) -> float | None:
    r = run["results"].get(attack)
    return r["accuracy"] if r else None


RECIPE_KEYS = ("kind", "seed", "hyperparameters", "checkpoint", "best_epoch", "stopped_early")
COST_KEYS = ("train_seconds", "eval_seconds", "train_forward_passes", "train_backward_passes")
PROVENANCE_KEYS = ("device", "versions", "git_commit", "started", "finished")


def _pick(run: dict[str, Any], keys: tuple[str, ...], **renamed: str) -> dict[str, Any]:
    """Some of the run's fields (``renamed``: card key = run key, first)."""
    return {**{k: run[v] for k, v in renamed.items()}, **{k: run[k] for k in keys}}


def _robust(run: dict[str, Any], inside: list[str]) -> tuple[str | None, float | None]:
    """The robust accuracy and what it is under: the worst case over ``inside`` (the attacks at
    the threat model), or without a worst-case row the strongest single attack."""
    if WORST in run["results"]:
        return f"{WORST} ({', '.join(inside)})", _acc(run, WORST)
    if inside:
        worst = min(inside, key=lambda a: _acc(run, a) if _acc(run, a) is not None else 2)
        return worst, _acc(run, worst)
    return None, None


def _weights(run: dict[str, Any]) -> dict[str, str]:
    """What the card says of an averaged model (``ema:``): its numbers are of the average."""
    ema = (run.get("hyperparameters") or {}).get("ema")
    if not ema:
        return {}
    stats = "the trained model's" if ema.get("buffers") == "copy" else "averaged too"
    ramp = ", ramped as min(decay, (1 + t) / (10 + t))" if ema.get("ramp") else ""
    return {
        "weights": (
            f"exponential moving average of the weights (decay {ema['decay']:g}{ramp}, after "
            f"{ema['warmup']:g} warm-up epochs; batch-norm statistics: {stats}); validation, "
            "the best checkpoint and every number of this card are the average's"
        )
    }


def unreliable(
    checklist: list[dict[str, Any]] | None,
    escalation: dict[str, Any] | None,
    attacks: list[Any],
) -> tuple[bool | None, list[str]]:
    """(RobustBench's ``unreliable`` flag, why) from the evidence: a checklist check failed and
    escalation did not settle it (none ran, or its last rung still broke examples / no larger
    budget was left), or the model is random (``deterministic`` failed) and no attack used EoT
    (neither the spec's nor an escalation rung).
    None when the checklist did not run (no evidence either way)."""
    if not checklist:
        return None, []
    reasons = []
    failed = [c["check"] for c in checklist if c.get("status") == "fail"]
    settled = bool(escalation and escalation.get("settled"))
    if failed and not settled:
        why = "escalation did not settle it" if escalation else "no escalation ran"
        reasons.append(f"checklist {', '.join(failed)} failed and {why}")
    rungs = (escalation or {}).get("rungs") or []  # EoT rungs count: they ran on the survivors
    if "deterministic" in failed and not any(uses_eot(a) for a in [*attacks, *rungs]):
        reasons.append("the model is random (deterministic failed) and no attack used EoT")
    return bool(reasons), reasons


def model_card(exp: dict[str, Any], run: dict[str, Any]) -> ModelCard:
    """Dataset, architecture, threat model, eps, clean and robust accuracy (and by what attacks:
    exactly those of the worst case; attacks outside the threat model are listed apart, with
    their norm and eps), recipe, checklist and provenance of one evaluated run."""
    threat = exp["threat"] or {}
    inside, off_threat = split_attacks(run["results"], threat)
    robust_attack, robust = _robust(run, inside)
    checklist = run["checklist"]
    escalation = run.get("escalation")
    flag, reasons = unreliable(checklist, escalation, exp.get("attacks") or [])
    card = {
        "schema": CARD_SCHEMA,
        "name": run["id"],
        "experiment": exp["name"],
        "dataset": (run.get("data") or {}).get("dataset"),
        "data": run.get("data"),
        "data_sha256": run["data_sha256"],
        "architecture": run["arch"],
        "model": run["model"],
        # the model takes pixels in pixel_range and normalises inside its forward pass
        "normalization": run.get("normalize"),
        "class_names": run.get("class_names"),
        "threat_model": THREAT_MODELS.get(threat.get("norm"), threat.get("norm")),
        "eps": threat.get("eps"),
        "eps_text": fmt_eps(threat.get("eps"), threat.get("pixel_range")),
        "pixel_range": threat.get("pixel_range"),
        "clean_acc": _acc(run, CLEAN),
        "robust_acc": robust,
        "robust_acc_attack": robust_attack,
        "worst_case_attacks": inside if WORST in run["results"] else [],
        "off_threat_attacks": off_threat,
        "n_test": (run["results"].get(CLEAN) or {}).get("n"),
        "results": run["results"],
        "recipe": _pick(run, RECIPE_KEYS, name="recipe") | _weights(run),
        "checkpoint": run.get("checkpoint_provenance"),  # an audit's model file
        "checklist": checklist,
        "escalation": escalation,
        "escalation_text": run.get("escalation_text"),
        "unreliable": flag,
        "unreliable_reasons": reasons,
        "poisoning": run["poisoning"],
        "cost": _pick(run, COST_KEYS),
        "provenance": _pick(run, PROVENANCE_KEYS),
    }
    if run.get("certified"):  # randomized smoothing per noise level, with its parameters
        card["certified"] = run["certified"]
    return ModelCard.model_validate(card)
