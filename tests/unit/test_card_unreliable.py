"""The model card's ``unreliable`` follows the evidence (issue 17, item 7): a failed check that
escalation did not settle, or a random model attacked without EoT; and the card says in words
what escalated. Pure: the card is built from plain run data, no torch."""

from __future__ import annotations

from runner.report.cards import model_card, unreliable
from runner.spec.attacks import uses_eot
from runner.store import EscalationRecord, EscalationRung
from runner.store.files import dump


def _check(name: str, status: str) -> dict:
    return {"check": name, "status": status, "detail": "", "evidence": {}}


PASSING = [_check(c, "pass") for c in ("large_eps", "gradients", "deterministic")]
MASKED = [_check("large_eps", "fail"), _check("gradients", "fail"), _check("deterministic", "pass")]
RANDOM = [_check("large_eps", "pass"), _check("gradients", "pass"), _check("deterministic", "fail")]


def _escalation(last_broke: int) -> dict:
    rungs = [
        EscalationRung(attack="square_1000", kind="square", ladder="square",
                       budget="1000 queries", reasons=["checklist gradients: fail"], attacked=330,
                       broken=4, seconds=20.8, forward_passes=330000),
        EscalationRung(attack="square_5000", kind="square", ladder="square",
                       budget="5000 queries", reasons=["checklist gradients: fail"], attacked=326,
                       broken=last_broke, seconds=77.3, forward_passes=1630000),
    ]  # fmt: skip
    rec = EscalationRecord(signals=["checklist gradients: fail"], rungs=rungs,
                           settled=last_broke == 0, broken=4 + last_broke)  # fmt: skip
    return dump(rec)


APGD = {"name": "apgd_ce", "kind": "apgd", "steps": 100}


def test_a_failed_check_is_unreliable_unless_escalation_settled_it():
    assert unreliable(MASKED, None, [APGD]) == (
        True, ["checklist large_eps, gradients failed and no escalation ran"])  # fmt: skip
    assert unreliable(MASKED, _escalation(last_broke=3), [APGD]) == (
        True, ["checklist large_eps, gradients failed and escalation did not settle it"])  # fmt: skip
    assert unreliable(MASKED, _escalation(last_broke=0), [APGD]) == (False, [])
    assert unreliable(PASSING, None, [APGD]) == (False, [])
    assert unreliable([], None, [APGD]) == (None, [])  # no checklist: no evidence either way


def test_a_random_model_is_unreliable_without_eot_even_when_escalation_settled():
    settled = _escalation(last_broke=0)
    flag, why = unreliable(RANDOM, settled, [APGD])
    assert flag is True
    assert why == ["the model is random (deterministic failed) and no attack used EoT"]
    assert unreliable(RANDOM, settled, [APGD, {**APGD, "eot_iter": 20}]) == (False, [])
    assert unreliable(RANDOM, settled, [{"kind": "autoattack", "composition": "rand"}]) == (
        False, [])  # fmt: skip
    assert not uses_eot({"kind": "apgd", "eot_iter": 1}) and not uses_eot(APGD)


def test_a_random_model_whose_escalation_ran_eot_rungs_is_not_unreliable_for_it():
    """The white-box rungs of a random model's escalation carry eot_iter 20: they count as EoT."""
    rung = EscalationRung(attack="apgd_ce_eot20", kind="apgd", ladder="white_box",
                          budget="100 steps, EoT 20", reasons=["checklist deterministic: fail"],
                          attacked=200, broken=0, seconds=9.0, eot_iter=20)  # fmt: skip
    rec = dump(EscalationRecord(signals=rung.reasons, rungs=[rung], settled=True))
    assert unreliable(RANDOM, rec, [APGD]) == (False, [])
    no_eot = dump(EscalationRecord(signals=rung.reasons, settled=True,
                                   rungs=[rung.model_copy(update={"eot_iter": 1})]))  # fmt: skip
    assert unreliable(RANDOM, no_eot, [APGD])[0] is True


def _run(checklist, escalation) -> dict:
    results = {
        "clean": {"accuracy": 0.99, "n": 360, "scope": "clean"},
        "square": {"accuracy": 0.92, "n": 360, "scope": "cascade", "norm": "linf", "eps": 0.1},
        "square_1000": {"accuracy": 0.91, "n": 360, "scope": "cascade", "norm": "linf",
                        "eps": 0.1},
        "worst_case": {"accuracy": 0.91, "n": 360, "scope": "worst_case"},
    }  # fmt: skip
    text = EscalationRecord.model_validate(escalation).words if escalation else None
    return {
        "id": "m@audit", "arch": "small_cnn", "model": "m", "data_sha256": None,
        "results": results, "recipe": "audit", "kind": "audit", "seed": None,
        "hyperparameters": {}, "checkpoint": None, "best_epoch": None, "stopped_early": None,
        "checklist": checklist, "escalation": escalation, "escalation_text": text,
        "poisoning": None, "train_seconds": 0.0, "eval_seconds": 1.0,
        "train_forward_passes": 0, "train_backward_passes": 0, "device": "cpu",
        "versions": {}, "git_commit": None, "started": None, "finished": None,
    }  # fmt: skip


def test_the_card_says_what_escalated_and_names_it_in_the_worst_case():
    exp = {"name": "audit", "threat": {"norm": "linf", "eps": 0.1, "pixel_range": [0, 1]},
           "attacks": [{"name": "square", "kind": "square", "queries": 250}]}  # fmt: skip
    card = model_card(exp, _run(MASKED, _escalation(last_broke=3)))
    assert card.unreliable is True and card.escalation is not None
    assert card.escalation_text.startswith("The suite escalated on checklist gradients: fail:")
    assert "square_5000 (5000 queries: broke 3)" in card.escalation_text
    assert "did not settle" in card.escalation_text
    assert card.worst_case_attacks == ["square", "square_1000"]
    assert card.robust_acc_attack == "worst_case (square, square_1000)"
    calm = model_card(exp, _run(PASSING, None))
    assert calm.unreliable is False and calm.escalation is None and calm.escalation_text is None
