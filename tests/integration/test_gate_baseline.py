"""The gate against a baseline: a new checkpoint audited with `advrun eval --baseline` passes, passes
within noise, fails on a real drop (exit 3), and is refused against an incomparable release."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from report_helpers import EVIL, copy_experiment

from runner.cli import main
from runner.errors import EXIT_GATE


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """rel1: the accepted release (the standard model, audited); rel2: the same checkpoint
    audited again as a new release; rel3: a broken checkpoint (all weights zero)."""
    tmp = tmp_path_factory.mktemp("releases")
    spec, out = copy_experiment(tmp_path_factory, tmp)
    [run] = sorted((out / "runs").glob("*@standard@s0-*"))
    good = run / "checkpoints" / "best.pt"
    broken = tmp / "broken.pt"
    torch.save({k: torch.zeros_like(v) for k, v in torch.load(good).items()}, broken)
    base = ["eval", str(spec), "--device", "cpu", "-q"]
    assert main([*base, "--checkpoint", str(good), "-o", str(tmp / "rel1")]) == 0
    assert main(["report", str(tmp / "rel1")]) == 0  # model cards for the card-path baseline
    assert main([*base, "--checkpoint", str(good), "-o", str(tmp / "rel2")]) == 0
    return tmp, spec, good, broken


def audit_dir(rel):
    [d] = [p for p in (rel / "runs").iterdir() if (p / "metrics.json").exists()]
    return d


def judge(releases, baseline, rel="rel2", ckpt=None, *extra):
    tmp, spec, good, _ = releases
    ckpt = ckpt or good
    args = ["eval", str(spec), "--checkpoint", str(ckpt), "-o", str(tmp / rel), "-q"]
    return main([*args, "--baseline", str(baseline), *extra])


def test_the_same_model_passes_and_the_report_shows_the_comparison(releases, capsys):
    tmp = releases[0]
    assert judge(releases, tmp / "rel1") == 0
    out = capsys.readouterr().out
    assert "gate: passed" in out
    assert f"pass baseline {EVIL}@audit: clean accuracy" in out and "+0.0 points" in out
    assert main(["report", str(tmp / "rel2")]) == 0
    gate = json.loads((tmp / "rel2" / "results.json").read_text())["experiments"][0]["gate"]
    rows = [c for c in gate["checks"] if c["rule"] == "baseline"]
    assert sorted(c["metric"] for c in rows) == ["clean", "worst_case"]
    assert all(c["diff"] == 0 and c["p_value"] == 1 and c["verdict"] == "pass" for c in rows)
    assert gate["baseline"] == str((tmp / "rel1").resolve())
    html = (tmp / "rel2" / "report.html").read_text()
    assert "Against the baseline" in html and EVIL not in html  # the name is escaped
    # a model card of the release works as the baseline too
    card = audit_dir(tmp / "rel1") / "model_card.json"
    assert judge(releases, card) == 0


def test_a_real_drop_fails_with_exit_3(releases, capsys):
    tmp, _, _, broken = releases
    assert judge(releases, tmp / "rel1", "rel3", broken) == EXIT_GATE
    out = capsys.readouterr().out
    assert "gate: FAILED" in out and "a real drop (McNemar p =" in out
    fails = [line for line in out.splitlines() if line.strip().startswith("FAIL baseline")]
    assert any("clean accuracy" in line for line in fails)


def test_a_drop_within_noise_passes_and_says_so(releases, tmp_path, capsys):
    """The baseline got 3 more test digits right (cleanly) than the new model: a drop of 3.75
    points against 1 allowed, but McNemar p = 0.25 on 3 discordant examples: noise."""
    tmp = releases[0]
    noisy = tmp_path / "rel1"
    shutil.copytree(tmp / "rel1", noisy)
    path = audit_dir(noisy) / "examples.parquet"
    ex = pd.read_parquet(path)
    wrong = ex.index[(ex["attack"] == "clean") & ~ex["correct"]][:3]
    assert len(wrong) == 3
    ex.loc[wrong, "correct"] = True
    ex.to_parquet(path, index=False)
    assert judge(releases, noisy) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "baseline" in x and "clean accuracy" in x)
    assert "-3.8 points" in line and "within noise" in line and "McNemar p = 0.250" in line


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda cfg, m: cfg["threat"].update(eps=0.2), "threat model: eps 0.2 -> 0.1"),
        (lambda cfg, m: cfg["attacks"].pop(0), "attack suite: only in the new suite: fgsm"),
        (lambda cfg, m: cfg["attacks"][1].update(steps=9), "attack pgd: steps 9 -> 5"),
        (lambda cfg, m: m.update(data_sha256="0" * 64), "data hash 000000000000 (baseline)"),
    ],
    ids=["threat", "suite", "attack-settings", "data"],
)
def test_an_incomparable_baseline_is_refused_naming_what_differs(
    releases, tmp_path, capsys, edit, message
):
    tmp = releases[0]
    other = tmp_path / "rel1"
    shutil.copytree(tmp / "rel1", other)
    d = audit_dir(other)
    cfg = json.loads((d / "run.json").read_text())
    metrics = json.loads((d / "metrics.json").read_text())
    edit(cfg, metrics)
    (d / "run.json").write_text(json.dumps(cfg))
    (d / "metrics.json").write_text(json.dumps(metrics))
    assert judge(releases, other) == 2
    err = capsys.readouterr().err
    assert "is not comparable" in err and message in err and "Traceback" not in err


def test_the_spec_gate_block_and_a_missing_baseline(releases, tmp_path, capsys):
    tmp, spec, good, _ = releases
    rel1 = tmp / "rel1"
    gate = f"gate={{baseline: '{rel1}', max_drop: {{clean: 0.0, fgsm: 0.05}}}}"
    args = ["eval", str(spec), "--checkpoint", str(good), "-o", str(tmp / "rel2"), "-q"]
    assert main([*args, gate]) == 0
    out = capsys.readouterr().out
    assert "fgsm accuracy" in out and "worst case" not in out  # the spec's metrics only
    assert main([*args, "--baseline", str(tmp_path / "nowhere")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["validate", str(spec), "gate={max_drop: {pgd99: 0.1}}"]) == 2
    assert "'pgd99' is not an attack of the suite" in capsys.readouterr().err
