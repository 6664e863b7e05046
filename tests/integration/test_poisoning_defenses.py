"""Poisoning defenses end to end through the real CLI on digits: one experiment sweeps
none / spectral_signatures / activation_clustering against a pattern backdoor (7 -> 0, 3% of
the training set: 38 poisons), and beside the backdoor_mitigation recipe (slow); the filter is kept in the
run directory so a killed run does not redo it; a model without a penultimate layer is refused
at file:line:col."""

from __future__ import annotations

import json
import math
import os
import textwrap

import pandas as pd
import pytest

from runner.cli import main

SPEC = """\
name: defenses
seeds: [0]
device: cpu
deterministic: true
data: {dataset: digits}
threat: {norm: linf, eps: 0.1}
models:
  - {name: mlp, arch: mlp, kwargs: {hidden: [256, 256]}}
recipes:
  - {name: standard, kind: standard, epochs: 10, optimizer: {lr: 0.003}, monitor: {n: 64, steps: 2}}
poisoning:
  target: 0
  source: 7
  fraction: 0.03
  defense: [none, spectral_signatures, activation_clustering]
attacks:
  - {name: pgd, kind: pgd, steps: 3, step_size: eps/2, engine: native}
eval: {bootstrap: 200, checklist: false, checkpoint: last}
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    d = tmp_path_factory.mktemp("defenses")
    (d / "spec.yaml").write_text(SPEC)
    assert main(["run", str(d / "spec.yaml"), "-o", str(d / "out"), "-q"]) == 0
    return d


def _rows(out, recipe: str) -> dict[tuple[str, str], pd.Series]:
    df = pd.read_csv(out / "results.csv")
    df = df[df.recipe == recipe]
    return {(r.defense, r.attack): r for r in df.itertuples()}


@pytest.mark.parametrize("defense", ["spectral_signatures", "activation_clustering"])
def test_each_detector_removes_most_poisons_and_cuts_the_attack_success_rate(swept, defense):
    rows = _rows(swept / "out", "standard")
    none, asr = rows[("none", "asr")], rows[(defense, "asr")]
    recall, precision = rows[(defense, "filter_recall")], rows[(defense, "filter_precision")]
    removed = rows[(defense, "filter_removed")]
    print(f"\n{defense}: recall {recall.accuracy:.3f} (n={recall.n}), precision "
          f"{precision.accuracy:.3f} (n={precision.n}), removed {removed.accuracy:.3f}; ASR "
          f"{none.accuracy:.3f} [{none.ci_low:.3f}, {none.ci_high:.3f}] -> {asr.accuracy:.3f} "
          f"[{asr.ci_low:.3f}, {asr.ci_high:.3f}]")  # fmt: skip
    assert none.accuracy > 0.8  # the backdoor works without a defense (measured: 1.00)
    # measured: spectral 35/38 found, activation clustering 38/38; SE at n=38 is <= 0.05, so
    # 0.75 lies more than 3 SE below either
    assert recall.n == 38 and recall.accuracy >= 0.75
    # better than removing at random (precision = the poisons' share, 0.03) by 3 SE at its n;
    # spectral removes 1.5 x the expected share of *every* class by design (precision 0.08 of
    # 444 removed), activation clustering only small clusters (0.25 of 151)
    se = math.sqrt(precision.accuracy * (1 - precision.accuracy) / precision.n)
    assert precision.accuracy >= 0.03 + 3 * se
    assert asr.ci_high < none.ci_low  # measured: 1.00 -> 0.53 (spectral), -> 0.00 (clustering)
    clean = rows[(defense, "clean")].accuracy
    assert clean > 0.85  # still learns digits on what is left


def test_the_metrics_card_and_report_hold_the_filter(swept):
    out = swept / "out"
    seen = set()
    for d in (out / "runs").iterdir():
        m = json.loads((d / "metrics.json").read_text())
        p = m["poisoning"]
        seen.add((m["recipe"], p["defense"]))
        assert p["scenario"] == "backdoor" and p["poisons"] == 38
        assert p["after"]["asr"]["value"] == p["asr"] and p["after"]["asr"]["n"] == p["n"]
        card = json.loads((d / "model_card.json").read_text())
        assert card["poisoning"] == p
        if p["defense"] == "none":
            assert p.get("filter") is None and p.get("before") is None
            assert not (d / "poisoning").exists()  # nothing trained for it
            continue
        f = p["filter"]
        assert f["tp"] + f["fn"] == 38 and f["tp"] + f["fp"] == f["removed"]
        assert f["tp"] + f["fp"] + f["tn"] + f["fn"] == f["examples"]
        assert sum(c["removed"] for c in f["per_class"]) == f["removed"]
        assert [c["poisons"] for c in f["per_class"] if c["label"] != 0] == [0] * 9
        assert p["before"]["asr"]["value"] > 0.8  # the detector's model has the backdoor
        kept = json.loads((d / "poisoning" / "filter.json").read_text())
        assert len(kept["removed"]) == f["removed"] and kept["metrics"] == f
    assert len(seen) == 3
    html = (out / "report.html").read_text()
    assert "Filters" in html and "Removed per class" in html and "Poisoning filters:" in html


def test_a_killed_run_keeps_its_filter(swept, capsys):
    """The final training of a defended run is lost (checkpoints, status, metrics gone): the
    rerun trains it again but neither retrains the detector's model nor redoes the filter."""
    import shutil

    out = swept / "out"
    (d,) = [d for d in (out / "runs").iterdir() if "standard[defense=spectral" in d.name]
    before = json.loads((d / "metrics.json").read_text())
    kept = d / "poisoning" / "filter.json"
    stamps = {
        p: os.stat(p).st_mtime_ns for p in (kept, d / "poisoning/detector/checkpoints/last.pt")
    }
    shutil.rmtree(d / "checkpoints")
    for name in ("metrics.json", "status.json"):
        (d / name).unlink()
    assert main(["run", str(swept / "spec.yaml"), "-o", str(out), "-q"]) == 0
    assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps
    assert "kept from an earlier attempt" in (d / "log.txt").read_text()
    after = json.loads((d / "metrics.json").read_text())
    # deterministic: the same filter and the same final model, so the same numbers
    assert after["poisoning"] == before["poisoning"]


BAD = """\
name: bad
device: cpu
threat: {norm: linf, eps: 0.1}
models:
  - {name: linear, arch: mlp, kwargs: {hidden: []}}
recipes:
  - {name: standard, kind: standard, epochs: 1}
poisoning:
  target: 0
  defense: spectral_signatures
"""


@pytest.mark.parametrize(
    ("extra", "where", "text"),
    [
        ("", ":9:3: poisoning.feature_layer:", "poisoning.feature_layer: name"),
        ("  feature_layer: net.7\n", ":11:18: poisoning.feature_layer:", "no module 'net.7'"),
    ],
)
def test_a_model_without_a_penultimate_layer_is_refused_at_its_line(tmp_path, capsys, extra,
                                                                    where, text):  # fmt: skip
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(BAD) + extra)
    assert main(["run", str(spec), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{spec}{where}" in err and text in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


MITIGATED = """\
  - {name: mitigated, kind: backdoor_mitigation, fraction: 0.5, epochs: 10, optimizer: {lr: 0.003},
     monitor: {n: 64, steps: 2}}
"""


@pytest.mark.slow
def test_a_defense_combines_with_the_backdoor_mitigation_recipe(tmp_path):
    text = SPEC.replace("poisoning:\n", MITIGATED + "poisoning:\n").replace(
        "[none, spectral_signatures, activation_clustering]", "[none, spectral_signatures]"
    )
    (tmp_path / "spec.yaml").write_text(text)
    assert main(["run", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "out"), "-q"]) == 0
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    asr = df[df.attack == "asr"].set_index(["recipe", "defense"])["accuracy"]
    print("\n" + asr.to_string())
    assert set(asr.index) == {(r, d) for r in ("standard", "mitigated")
                              for d in ("none", "spectral_signatures")}  # fmt: skip
    recall = df[(df.attack == "filter_recall") & (df.recipe == "mitigated")]["accuracy"]
    assert len(recall) == 1 and recall.iloc[0] >= 0.75  # the same filter (35/38 measured)
    # the mitigation alone cuts the ASR (0.99 -> 0.30 in test_poisoning.py's setting); with the
    # filter on top it is no higher than the filter alone gives plus 3 SE at n=36 (0.25)
    both = asr.loc[("mitigated", "spectral_signatures")]
    assert both <= asr.loc[("standard", "spectral_signatures")] + 0.25
