"""The comparison table's attack columns read left to right in the order the cascade ran them
(issue 17, item 6): cheapest first, an escalation's rungs after the suite, the worst case last.
Pure: no torch."""

from __future__ import annotations

from runner.compile import Threat
from runner.report.suite import cascade_order
from runner.report.tables import attack_columns
from runner.spec.attacks import ATTACK_SPECS

THREAT = Threat("linf", 0.1, (0.0, 1.0))


def _attack(kind: str, name: str, **kw):
    return ATTACK_SPECS[kind].model_validate({"name": name, "kind": kind, "eps": 0.1,
                                              "norm": "linf", "batch_size": 64, **kw})  # fmt: skip


# specs/audit.yaml's suite in spec order, and an L2 attack outside the Linf threat
SUITE = [
    _attack("fgsm", "fgsm", engine="native"),
    _attack("pgd", "pgd20", engine="native", steps=20, step_size=0.025),
    _attack("apgd", "apgd_ce", loss="ce", steps=100),
    _attack("apgd", "apgd_t", loss="dlr", targeted=True, n_targets=9, steps=25),
    _attack("square", "square", queries=250),
    _attack("deepfool", "deepfool_l2", norm="l2", eps=1.0, steps=50),
]


def test_columns_follow_the_cascade_then_the_rungs_then_off_threat():
    order = cascade_order(SUITE, THREAT)
    # Square 250 (125 gradient-equivalents) runs before APGD-T 9 x 25 (234)
    assert order == ["fgsm", "pgd20", "apgd_ce", "square", "apgd_t", "deepfool_l2"]
    # results rows as stored: spec order, then the escalation's rungs, then the worst case
    names = ["clean", *(a.name for a in SUITE), "square_1000", "square_5000", "worst_case"]
    runs = [{"results": {n: {"accuracy": 0.5} for n in names}}]
    cols = attack_columns(runs, order, ("deepfool_l2",))
    assert cols == ["clean", "fgsm", "pgd20", "apgd_ce", "square", "apgd_t", "square_1000",
                    "square_5000", "deepfool_l2", "worst_case"]  # fmt: skip
