"""The HTML report of a real small experiment: numbers, sections, escaping, companions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from report_helpers import EVIL, copy_experiment, tiny_experiment

from runner.cli import main
from runner.execute.results import seed_summary

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = [
    "summary",
    "comparison",
    "curves",
    "training",
    "tuning",
    "poisoning",
    "checklist",
    "gate",
    "provenance",
    "threat",
]


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    spec, out = tiny_experiment(tmp_path_factory)
    html = (out / "report.html").read_text()
    report = json.loads((out / "results.json").read_text())
    return out, html, report


def section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start : html.index("</section>", start)]


def test_run_writes_report_results_json_and_model_cards(exp):
    out, html, report = exp
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for name in SECTIONS:
        assert f'<section id="{name}">' in html
    assert report["schema"] == "advrun.report/1"
    runs = report["experiments"][0]["runs"]
    assert len(runs) == 4 and all(r["state"] == "done" for r in runs)
    cards = sorted((out / "runs").glob("*/model_card.json"))
    assert len(cards) == 4


def test_comparison_numbers_match_the_stored_results(exp):
    out, _, report = exp
    e = report["experiments"][0]
    assert e["columns"] == ["clean", "fgsm", "pgd", "worst_case"]
    df = pd.read_csv(out / "results.csv")
    expected = seed_summary(df).set_index(["recipe", "attack"])
    for g in e["groups"]:
        for attack, cell in g["cells"].items():
            row = expected.loc[(g["recipe"], attack)]
            assert cell["seeds"] == 2
            assert cell["mean"] == pytest.approx(row["mean"], abs=1e-12)
            assert cell["std"] == pytest.approx(row["std"], abs=1e-12)
            runs = df[(df.recipe == g["recipe"]) & (df.attack == attack)]
            assert cell["ci_low"] == pytest.approx(runs["ci_low"].min())
            assert cell["ci_high"] == pytest.approx(runs["ci_high"].max())
        assert g["train_forward_passes"] == pytest.approx(
            df[df.recipe == g["recipe"]].groupby("seed")["train_forward_passes"].first().mean()
        )
    worst = df[df.attack == "worst_case"].groupby("recipe")["accuracy"].mean()
    assert e["summary"]["best"] == f"{EVIL}@{worst.idxmax()}"
    assert e["summary"]["headline"] == "worst_case"
    paired = e["paired_test"]
    assert paired["n"] == 80 and 0 <= paired["p_value"] <= 1


def test_model_card_fields(exp):
    out, _, _ = exp
    for path in (out / "runs").glob("*/model_card.json"):
        card = json.loads(path.read_text())
        metrics = json.loads((path.parent / "metrics.json").read_text())
        acc = {r["attack"]: r["accuracy"] for r in metrics["results"]}
        assert card["dataset"] == "digits" and card["architecture"] == "mlp"
        assert card["threat_model"] == "Linf" and card["eps"] == 0.1
        assert card["clean_acc"] == acc["clean"]
        assert card["robust_acc"] == acc["worst_case"]
        assert card["robust_acc_attack"] == "worst_case (fgsm, pgd)"
        assert card["recipe"]["kind"] in ("standard", "pgd")
        assert [c["check"] for c in card["checklist"]] == [c["check"] for c in metrics["checklist"]]
        # a failed check makes the card unreliable unless the escalation it set off settled
        settled = (metrics.get("escalation") or {}).get("settled", False)
        failed = any(c["status"] == "fail" for c in metrics["checklist"])
        assert card["unreliable"] == (failed and not settled)


def test_user_text_is_escaped_and_nothing_is_fetched(exp):
    _, html, _ = exp
    assert EVIL not in html and "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", html, re.I)
    refs += re.findall(r"""url\(\s*["']?([^"')]+)""", html, re.I)
    assert all(not re.match(r"(https?:)?//", r, re.I) for r in refs), refs
    assert "@import" not in html and "<link" not in html.lower()


def test_sections_render_what_was_run_and_say_what_was_not(exp):
    _, html, report = exp
    e = report["experiments"][0]
    assert "Not run." in section(html, "tuning") and "Not run." in section(html, "poisoning")
    assert "Not run." in section(html, "gate")  # the spec has no gate: block
    curves = section(html, "curves")
    assert "<svg" in curves and "pgd: accuracy against eps" in curves
    assert [c["attack"] for c in e["robustness_curves"]] == ["pgd"]
    assert e["robustness_curves"][0]["series"][0]["eps"] == [0.0, 0.05, 0.1, 0.2]
    assert section(html, "training").count("<svg") == 2
    checks = section(html, "checklist")
    assert "Not run." not in checks and "large eps" in checks
    assert e["checklist"]["counts"]["pass"] > 0
    prov = e["provenance"]
    assert prov["spec_sha256_verified"] is True and prov["seeds"] == [0, 1]
    assert prov["versions"][0]["torch"] and prov["data_sha256"]
    assert "name: tiny" in section(html, "provenance")  # the spec text as written
    threat = section(html, "threat")
    for atlas_id in ("AML.M0003", "AML.T0015", "AML.T0043", "AML.T0020"):
        assert atlas_id in threat


def test_report_command_several_dirs_side_by_side(exp, tmp_path, tmp_path_factory, capsys):
    _, out_b = copy_experiment(tmp_path_factory, tmp_path)
    out_a = exp[0]
    target = tmp_path / "both.html"
    assert main(["report", str(out_a), str(out_b), "-o", str(target)]) == 0
    html = target.read_text()
    labels = [e["label"] for e in json.loads((out_b / "results.json").read_text())["experiments"]]
    assert labels == ["tiny (" + "/".join(out_b.parts[-2:]) + ")"]  # unique next to out_a
    assert f"tiny ({out_b.parent.name}/out)" in html
    report_rows = section(html, "comparison").count('<td class="name">')
    assert report_rows == 4  # 2 model x recipe rows per experiment
    assert str(target) in capsys.readouterr().out


def test_report_errors_are_clear(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such output directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not an advrun output directory" in capsys.readouterr().err


def test_templates_ship_with_the_package(exp, tmp_path):
    """A wheel holds runner/ with templates/ inside it; the report must render from there."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^"templates" = "runner/templates"$', pyproject, re.M)  # force-include
    site = tmp_path / "site"
    shutil.copytree(ROOT / "runner", site / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "templates", site / "runner" / "templates")
    target = tmp_path / "wheel.html"
    code = (
        "import sys; from runner.report.render import template_dir, write_report; "
        f"print(template_dir()); write_report([{str(exp[0])!r}], {str(target)!r})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(site / "runner" / "templates")
    assert "&lt;script&gt;" in target.read_text()
