"""Cards, results.json and the report summary name exactly the attacks of the worst case; attacks
outside the threat model (another norm, a larger eps) are listed apart with norm, eps, accuracy."""

from __future__ import annotations

import json
import re

import pytest

from runner.cli import main

SPEC = """\
name: offthreat
seeds: [0]
data: {dataset: digits, limit: 300}
threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}
models:
  - {name: mlp, arch: mlp, kwargs: {hidden: [32]}}
recipes:
  - {name: standard, kind: standard, epochs: 2, batch_size: 64, optimizer: {name: adam, lr: 0.01},
     monitor: {n: 40, steps: 2}}
attacks:
  - {name: fgsm, kind: fgsm, engine: native}
  - {name: pgd_l2, kind: pgd, engine: native, norm: l2, eps: 0.5, steps: 5, step_size: eps/4}
  - {name: pgd, kind: pgd, engine: native, steps: 5, step_size: eps/4}
  - {name: pgd_big, kind: pgd, engine: native, eps: 0.2, steps: 5, step_size: eps/4}
eval: {n: 60, bootstrap: 100, checklist: false}
"""


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("offthreat")
    (root / "spec.yaml").write_text(SPEC)
    assert main(["run", str(root / "spec.yaml"), "-o", str(root / "out"), "-q"]) == 0
    return root / "out"


def test_card_lists_the_worst_case_attacks_and_the_off_threat_ones_apart(out):
    (path,) = (out / "runs").glob("*/model_card.json")
    card = json.loads(path.read_text())
    acc = {
        r["attack"]: r["accuracy"]
        for r in json.loads((path.parent / "metrics.json").read_text())["results"]
    }
    assert card["robust_acc_attack"] == "worst_case (fgsm, pgd)"
    assert card["worst_case_attacks"] == ["fgsm", "pgd"]
    assert card["robust_acc"] == acc["worst_case"]
    assert card["off_threat_attacks"] == [
        {"name": "pgd_l2", "kind": "pgd", "norm": "l2", "eps": 0.5, "accuracy": acc["pgd_l2"]},
        {"name": "pgd_big", "kind": "pgd", "norm": "linf", "eps": 0.2, "accuracy": acc["pgd_big"]},
    ]


def test_results_json_and_report_summary_say_the_same(out):
    e = json.loads((out / "results.json").read_text())["experiments"][0]
    assert e["worst_case_attacks"] == ["fgsm", "pgd"]
    assert [(a["name"], a["norm"], a["eps"]) for a in e["off_threat_attacks"]] == [
        ("pgd_l2", "l2", 0.5),
        ("pgd_big", "linf", 0.2),
    ]
    (run,) = e["runs"]
    assert run["worst_case_attacks"] == ["fgsm", "pgd"]
    assert [a["name"] for a in run["off_threat_attacks"]] == ["pgd_l2", "pgd_big"]
    texts = [i["text"] for i in e["summary"]["items"]]
    best = next(t for t in texts if t.startswith("Best defense"))
    assert "worst case over fgsm, pgd at L∞ eps 0.1" in best and "pgd_l2" not in best
    off = next(t for t in texts if t.startswith("Outside the threat model"))
    assert "pgd_l2 (L2 eps 0.5)" in off and "pgd_big (L∞ eps 0.2 (51/255)) " in off
    html = (out / "report.html").read_text()
    summary = re.search(r'<section id="summary">(.*?)</section>', html, re.S).group(1)
    assert "worst case over fgsm, pgd at L∞ eps 0.1" in summary
    assert "pgd_l2 (L2 eps 0.5)" in summary and "worst case over 2 attacks" in summary
