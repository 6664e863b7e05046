"""Sections filled by other parts of advrun: tuning, poisoning, collapse, failed runs."""

from __future__ import annotations

import json
import textwrap

import pytest
from report_helpers import copy_experiment

from runner.cli import main


def section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start : html.index("</section>", start)]


def trial(number, state, values, **params):
    return {
        "number": number,
        "state": state,
        "params": params,
        "values": values,
        "pruned_at_epoch": 2 if state == "pruned" else None,
        "run_id": f"t{number}",
    }


# The shape runner/tune/summary.py writes for a multi-objective study.
TUNE = {
    "study_name": "demo",
    "mode": "train",
    "directions": ["maximize", "maximize"],
    "objectives": ["clean_accuracy", "robust_accuracy@pgd"],
    "target": {"model": "m", "recipe": "madry"},
    "trials": [
        trial(0, "complete", [0.9, 0.3], eps=0.05),
        trial(1, "complete", [0.7, 0.5], eps=0.2),
        trial(2, "pruned", None, eps=0.3),
        trial(3, "complete", [0.6, 0.4], eps=0.25),
    ],
    "pareto_front": [trial(0, "complete", [0.9, 0.3]), trial(1, "complete", [0.7, 0.5])],
    "param_importances": {"clean_accuracy": {"eps": 1.0}, "robust_accuracy@pgd": {"eps": 1.0}},
}


@pytest.fixture
def doctored(tmp_path_factory, tmp_path):
    """The shared experiment plus a study, backdoor results, a collapse and a failed run."""
    _, out = copy_experiment(tmp_path_factory, tmp_path)
    (out / "tune").mkdir()
    (out / "tune" / "summary.json").write_text(json.dumps(TUNE))
    runs = sorted((out / "runs").iterdir())
    for i, d in enumerate(runs):
        m = json.loads((d / "metrics.json").read_text())
        asr = 0.1 if m["kind"] == "pgd" else 0.9
        m["poisoning"] = {"asr": asr, "n": 70, "ci_low": asr - 0.05, "ci_high": asr + 0.05,
                          "target": 0, "trigger": "pattern", "fraction": 0.1}  # fmt: skip
        (d / "metrics.json").write_text(json.dumps(m))
        if i == 0:
            (d / "epochs.csv").write_text(
                textwrap.dedent("""\
                epoch,loss,lr,eps,val_clean,val_robust,seconds
                1,1.0,0.01,0.1,0.6,0.40,1
                2,0.8,0.01,0.1,0.7,0.55,1
                3,0.5,0.01,0.1,0.8,0.02,1
                """)
            )
    failed = runs[-1]
    (failed / "metrics.json").unlink()
    (failed / "status.json").write_text(json.dumps({"state": "failed", "diagnosis": "NaN loss"}))
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    return out, html, json.loads((out / "results.json").read_text())["experiments"][0], runs


def test_tuning_section(doctored):
    _, html, e, _ = doctored
    t = e["tuning"]
    assert [x["best_so_far"] for x in t["trials"]] == [0.9, 0.9, 0.9, 0.9]
    assert t["pareto_numbers"] == [0, 1] and t["states"] == {"complete": 3, "pruned": 1}
    tuning = section(html, "tuning")
    assert "Not run." not in tuning
    for title in ("Optimisation history", "Parameter importances", "Pareto front"):
        assert title in tuning
    assert "2 trials: #0, #1" in tuning


def test_poisoning_section(doctored):
    _, html, e, _ = doctored
    rows = {r["kind"]: r for r in e["poisoning"]["rows"]}
    assert rows["pgd"]["asr"] == pytest.approx(0.1) and rows["standard"]["asr"] == 0.9
    assert e["poisoning"]["setup"] == {"target": 0, "trigger": "pattern", "fraction": 0.1}
    p = section(html, "poisoning")
    assert "Not run." not in p and "90.0%" in p and "attack success rate" in p
    atlas = {a["id"]: a for a in e["threat_model"]["atlas"]}
    assert atlas["AML.T0020"]["evaluated"] and atlas["AML.T0018"]["evaluated"]


def test_collapse_and_failed_run_are_reported(doctored):
    _, html, e, runs = doctored
    items = [i["text"] for i in e["summary"]["items"] if i["level"] == "bad"]
    assert any("catastrophic overfitting" in t and "epoch 3" in t for t in items)
    failed = next(r for r in e["runs"] if r["dir"] == runs[-1].name)
    assert failed["state"] == "failed" and failed["diagnosis"] == "NaN loss"
    group = next(g for g in e["groups"] if g["group"] == failed["group"])
    assert len(group["seeds"]) == 1 and group["missing"] == [f"{failed['id']} (failed)"]
    assert "NaN loss" in section(html, "comparison")
    assert not (runs[-1] / "model_card.json").exists()  # no card without results


@pytest.mark.slow
def test_real_backdoor_experiment(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent("""\
        name: pois
        seeds: [0]
        data: {dataset: digits}
        threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}
        poisoning: {trigger: pattern, target: 0, fraction: 0.1}
        models: [{name: mlp, arch: mlp, kwargs: {hidden: [32]}}]
        recipes:
          - {name: standard, kind: standard, epochs: 3, batch_size: 64,
             optimizer: {name: adam, lr: 0.01}, monitor: {n: 40, steps: 3}}
          - {name: mitigated, kind: backdoor_mitigation, epochs: 3, batch_size: 64,
             optimizer: {name: adam, lr: 0.01}, monitor: {n: 40, steps: 3}}
        attacks: [{name: fgsm, kind: fgsm, engine: native}]
        eval: {n: 120, bootstrap: 200, checklist: false}
        gate: {rules: [{recipes: [mitigated], max_attack_success_rate: 0.5}]}
        """)
    )
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "-q"]) == 0
    e = json.loads((out / "results.json").read_text())["experiments"][0]
    rows = {r["group"]: r for r in e["poisoning"]["rows"]}
    assert rows["mlp@mitigated"]["mitigation"] and not rows["mlp@standard"]["mitigation"]
    # measured on 109 triggered images: 0.982 vs 0.110, SE of the difference 0.033: 27 SE; the
    # gate's 0.5 is 13 SE above 0.110 (SE 0.030)
    assert rows["mlp@mitigated"]["asr"] < rows["mlp@standard"]["asr"]
    assert "asr" not in e["columns"]  # the success rate is not an accuracy column
    assert e["gate"]["ok"] and e["gate"]["checks"][0]["criterion"] == "backdoor attack success rate"
