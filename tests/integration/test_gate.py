"""The robustness gate: spec validation, exit code 3 on failure, and the report's account."""

from __future__ import annotations

import json
import math

import pytest
from report_helpers import EVIL, copy_experiment

from runner.cli import COMMANDS, main
from runner.errors import EXIT_GATE
from runner.report.gate import check_gate
from runner.spec import load_spec


@pytest.fixture
def exp(tmp_path_factory, tmp_path):
    spec, out = copy_experiment(tmp_path_factory, tmp_path)
    acc = json.loads((out / "results.json").read_text())["experiments"][0]["groups"]
    return spec, out, {g["recipe"]: g["cells"] for g in acc}


def rules(*items: str) -> str:
    return "gate.rules=[" + ", ".join(items) + "]"


def test_gate_passes_and_fails_with_a_distinct_exit_code(exp, capsys):
    spec, out, cells = exp
    worst = min(c["worst_case"]["mean"] for c in cells.values())
    ok = rules(f"{{min_accuracy: {{worst_case: {worst - 0.01:.4f}}}}}")
    assert main(["run", str(spec), "-o", str(out), "-q", "--no-report", ok]) == 0
    assert "gate: passed" in capsys.readouterr().out

    clean = cells["standard"]["clean"]["mean"]
    bad = rules(f"{{recipes: [standard], min_clean_accuracy: {clean + 0.05:.4f}}}")
    assert main(["run", str(spec), "-o", str(out), "-q", bad]) == EXIT_GATE == 3
    text = capsys.readouterr().out
    assert "gate: FAILED" in text
    assert f"FAIL rule 1 {EVIL}@standard: clean accuracy {clean:.3f} < {clean + 0.05:.3f}" in text
    # the report written by that run says which threshold failed
    gate = json.loads((out / "results.json").read_text())["experiments"][0]["gate"]
    assert gate["configured"] and not gate["ok"]
    failed = [c for c in gate["checks"] if not c["ok"]]
    assert [(c["group"], c["criterion"]) for c in failed] == [
        (f"{EVIL}@standard", "clean accuracy")
    ]
    html = (out / "report.html").read_text()
    assert "Gate FAILED" in html and "clean accuracy" in html


def test_every_seed_ci_bound_and_checklist_rules(exp):
    spec, out, cells = exp
    low = math.floor(min(c["pgd"]["ci_low"] for c in cells.values()) * 1e4) / 1e4
    loaded = load_spec(
        spec,
        [
            rules(
                f"{{min_accuracy: {{pgd: {low:.4f}}}, statistic: ci_low, over_seeds: every}}",
                "{recipes: [madry], min_accuracy: {fgsm: 1.0}}",
            )
        ],
    )
    ok, messages = check_gate(loaded.spec, out)
    assert not ok
    fails = [m for m in messages if m.startswith("FAIL")]
    assert (
        len(fails) == 1 and "madry: fgsm accuracy" in fails[0] and "mean over 2 seeds" in fails[0]
    )
    passes = [m for m in messages if m.startswith("pass")]
    assert len(passes) == 4 and all("95% CI lower bound" in m for m in passes)  # 2 groups x 2 seeds

    metrics = sorted(out.glob("runs/*/metrics.json"))
    statuses = {c["status"] for m in metrics for c in json.loads(m.read_text())["checklist"]}
    loaded = load_spec(spec, [rules("{checklist: pass}")])
    ok, messages = check_gate(loaded.spec, out)
    assert ok == (statuses == {"pass"}), messages


def test_missing_results_fail_the_gate(exp):
    spec, out, _ = exp
    loaded = load_spec(spec, [rules("{min_clean_accuracy: 0.0}")])
    ok, messages = check_gate(loaded.spec, out, run_ids=["never@run@s0-0000000000"])
    assert not ok and "has no results" in messages[0]


@pytest.mark.parametrize(
    ("rule", "where", "message"),
    [
        ("{models: [mpl], min_clean_accuracy: 0.5}", "gate.rules.0.models.0", "unknown model"),
        ("{min_accuracy: {pgd20: 0.5}}", "gate.rules.0.min_accuracy.pgd20", "did you mean 'pgd'"),
        ("{min_accuracy: {pgd: 70}}", "gate.rules.0.min_accuracy.pgd", "fraction in [0, 1]"),
        ("{recipes: [madry]}", "gate.rules.0", "sets no threshold"),
        ("{max_attack_success_rate: 0.1}", "gate.rules.0.max_attack_success_rate", "poisoning"),
        ("{min_clean_accuracy: 1.5}", "gate.rules.0.min_clean_accuracy", "less than or equal"),
        ("{checklist: always}", "gate.rules.0.checklist", "'ignore', 'no_fail' or 'pass'"),
    ],
)
def test_bad_gate_is_a_located_spec_error(exp, capsys, rule, where, message):
    spec = exp[0]
    assert main(["validate", str(spec), rules(rule)]) == 2
    err = capsys.readouterr().err
    assert f": {where}: " in err and message in err, err
    assert "Traceback" not in err


@pytest.mark.skipif("eval" not in COMMANDS, reason="advrun eval is not part of this build yet")
def test_eval_audit_exits_3_when_the_gate_fails(exp, tmp_path, capsys):
    spec, out, _ = exp
    ck = sorted(out.glob("runs/*@standard@s0-*/checkpoints/best.pt"))[0]
    audit = tmp_path / "audit"
    base = ["eval", str(spec), "--checkpoint", str(ck), "-o", str(audit), "-q"]
    assert main([*base, rules("{min_clean_accuracy: 1.0}")]) == EXIT_GATE
    assert "FAIL rule 1" in capsys.readouterr().out
    assert main([*base, rules("{min_clean_accuracy: 0.0}")]) == 0  # already evaluated: gate only
    assert "gate: passed" in capsys.readouterr().out
