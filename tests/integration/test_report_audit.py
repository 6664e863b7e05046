"""The report of an audit (``advrun eval`` then ``advrun report``): its first screen answers the
auditor's questions (which file, its hash and format, the model, the threat model, the suite as
run, clean and robust accuracy with intervals, the checklist, the gate's verdict), without the
training wording ("Best defense ... recipe kind audit") or sections that cannot apply."""

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest
import torch

from runner.cli import main
from runner.models import build_model

SPEC = """\
name: audit-report
seeds: [0]
data: {dataset: digits}
threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}
models:
  - {name: net, arch: mlp, kwargs: {hidden: [32]}}
recipes:
  - {name: std, kind: standard, epochs: 1}
attacks:
  - {name: fgsm, kind: fgsm, engine: native}
  - {name: pgd5, kind: pgd, engine: native, steps: 5, step_size: eps/2}
  - {name: pgd_l2, kind: pgd, engine: native, norm: l2, eps: 1.0, steps: 5, step_size: 0.25}
eval: {n: 80, bootstrap: 100, checklist_n: 16}
gate:
  rules:
    - {min_accuracy: {clean: 0.5, worst_case: 0.99}}
"""


def _text(fragment: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", fragment).split()))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-report")
    (root / "spec.yaml").write_text(SPEC)
    torch.manual_seed(0)
    from runner.execute.prepare import prepare
    from runner.spec.core import DataSpec

    data = prepare(DataSpec(dataset="digits"), (0.0, 1.0), torch.device("cpu"))
    model = build_model("mlp", (1, 8, 8), 10, {"hidden": [32]})
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(5):
        for i in range(0, len(data.x_train), 64):
            loss = torch.nn.functional.cross_entropy(
                model(data.x_train[i : i + 64]), data.y_train[i : i + 64]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    ckpt = root / "published.pth"  # a 2019-style release: legacy format, DataParallel, wrapped
    state = torch.nn.DataParallel(model).state_dict()
    torch.save({"state_dict": state, "epoch": 5}, ckpt, _use_new_zipfile_serialization=False)
    out = root / "out"
    argv = ["eval", str(root / "spec.yaml"), "--checkpoint", str(ckpt), "-o", str(out), "-q"]
    code = main([*argv, "--device", "cpu"])
    page = (out / "report.html").read_text(encoding="utf-8")  # advrun eval writes the report
    assert main(["report", str(out)]) == 0  # as advrun report does, from the stored runs

    def undated(text: str) -> str:
        return re.sub(r"generated \S+", "", text)

    assert undated((out / "report.html").read_text(encoding="utf-8")) == undated(page)
    (d,) = list((out / "runs").iterdir())
    metrics = json.loads((d / "metrics.json").read_text())
    return {"code": code, "page": page, "metrics": metrics, "ckpt": ckpt, "out": out, "dir": d}


def test_the_first_screen_answers_the_auditors_questions(report):
    page, m = report["page"], report["metrics"]
    first = _text(
        page[page.index('<section id="summary">') : page.index('<section id="comparison"')]
    )
    sha = hashlib.sha256(report["ckpt"].read_bytes()).hexdigest()
    acc = {r["attack"]: r for r in m["results"]}

    def interval(row) -> str:
        a, lo, hi = (f"{100 * row[k]:.1f}%" for k in ("accuracy", "ci_low", "ci_high"))
        return f"{a} 95% CI {lo}–{hi}"

    for text in (
        "Audit summary",
        str(report["ckpt"]),  # which model file
        f"SHA-256 {sha}",  # its hash
        "Format torch legacy serialization",  # and format
        "took the weights under 'state_dict'",  # what was unwrapped
        "stripped the DataParallel/DDP prefix 'module.'",
        "Model net: mlp hidden=[32]",
        "Threat model L∞ eps 0.1, pixels in [0, 1]",  # the threat model
        "Suite as run cascade",  # the suite as run, each attack described
        "fgsm: FGSM, L∞ eps 0.1",
        "pgd5: PGD, L∞ eps 0.1, 5 steps of 0.05",
        "pgd_l2: PGD, L2 eps 1",
        f"Clean accuracy {interval(acc['clean'])}",  # accuracies with their intervals
        f"Robust accuracy {interval(acc['worst_case'])} worst case over fgsm, pgd5 at L∞ eps 0.1",
        "80 test examples of digits",
        "Evaluation checklist",  # the checklist
        "Robustness gate FAILED",  # the gate's verdict (worst case >= 0.99 cannot hold)
        "worst case accuracy",
    ):
        assert text in first, text
    checks = m["checklist"]
    fails = sum(c["status"] == "fail" for c in checks)
    warns = sum(c["status"] == "warn" for c in checks)
    assert len(checks) >= 5 and f"{fails} fail · {warns} warn" in first
    assert report["code"] == 3  # advrun eval itself said the gate failed


def test_training_wording_and_sections_are_absent(report):
    page = report["page"]
    for absent in ("Best defense", "recipe kind audit", "Model × recipe", 'id="training"',
                   'id="tuning"', 'id="poisoning"', 'href="#training"', "Train time",
                   "One training seed"):  # fmt: skip
        assert absent not in page, absent
    for present in ('id="comparison"', "Results by attack", 'id="checklist"', 'id="gate"',
                    'id="provenance"', 'id="threat"', "Adversarial robustness audit"):  # fmt: skip
        assert present in page, present


def test_results_json_and_the_model_card_carry_the_file(report):
    data = json.loads((report["out"] / "results.json").read_text())
    assert data["audit_only"] is True
    (a,) = data["experiments"][0]["audit"]
    assert a["file"]["format"] == "torch-legacy" and a["gate"]["verdict"] == "FAILED"
    card = json.loads((report["dir"] / "model_card.json").read_text())
    prov = report["metrics"]["checkpoint_provenance"]
    assert card["checkpoint"] == prov and card["schema_version"] >= 3
    assert prov["sha256"] == hashlib.sha256(report["ckpt"].read_bytes()).hexdigest()
