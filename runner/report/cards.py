"""Model cards: one per run (:class:`runner.store.ModelCard`), in the spirit of RobustBench's
model entries, built from the report's data."""

from __future__ import annotations

from typing import Any

from runner.report.narrative import fmt_eps
from runner.report.suite import split_attacks
from runner.report.tables import CLEAN, WORST
from runner.store import ModelCard
from runner.store.card import CARD_SCHEMA

THREAT_MODELS = {"linf": "Linf", "l2": "L2"}  # RobustBench's names


def _acc(run: dict[str, Any], attack: str) -> float | None:
    r = run["results"].get(attack)
    return r["accuracy"] if r else None


def model_card(exp: dict[str, Any], run: dict[str, Any]) -> ModelCard:
    """Dataset, architecture, threat model, eps, clean and robust accuracy (and by what attacks:
    exactly those of the worst case; attacks outside the threat model are listed apart, with
    their norm and eps), recipe, checklist and provenance of one evaluated run."""
    threat = exp["threat"] or {}
    inside, off_threat = split_attacks(run["results"], threat)
    if WORST in run["results"]:
        robust_attack = f"{WORST} ({', '.join(inside)})"
        robust = _acc(run, WORST)
    elif inside:  # results written without a worst-case row: the strongest single attack
        worst = min(inside, key=lambda a: _acc(run, a) if _acc(run, a) is not None else 2)
        robust_attack, robust = worst, _acc(run, worst)
    else:
        robust_attack, robust = None, None
    checklist = run["checklist"]
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
        "recipe": {
            "name": run["recipe"],
            "kind": run["kind"],
            "seed": run["seed"],
            "hyperparameters": run["hyperparameters"],
            "checkpoint": run["checkpoint"],
            "best_epoch": run["best_epoch"],
            "stopped_early": run["stopped_early"],
        },
        "checklist": checklist,
        "unreliable": None
        if not checklist
        else any(c.get("status") == "fail" for c in checklist),  # RobustBench's flag
        "poisoning": run["poisoning"],
        "cost": {
            "train_seconds": run["train_seconds"],
            "eval_seconds": run["eval_seconds"],
            "train_forward_passes": run["train_forward_passes"],
            "train_backward_passes": run["train_backward_passes"],
        },
        "provenance": {
            "device": run["device"],
            "versions": run["versions"],
            "git_commit": run["git_commit"],
            "started": run["started"],
            "finished": run["finished"],
        },
    }
    return ModelCard.model_validate(card)
