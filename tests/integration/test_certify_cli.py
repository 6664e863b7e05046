"""Randomized smoothing through the real CLI on digits: a Gaussian-noise run certified at its own
sigma and another, its rows everywhere they belong (results.csv, certified.csv, examples.parquet,
metrics.json, the model card, the report); killed during certification and rerun, the numbers
equal an uninterrupted run's and finished examples are not redone; `advrun eval` certifies too."""

from __future__ import annotations

import json
import math
import signal

import pandas as pd
import pytest
import torch
from exec_helpers import advrun, run_dirs

SPEC = """\
name: smooth
seeds: [0]
device: cpu
deterministic: true
data: {dataset: digits, limit: 400}
threat: {norm: l2, eps: 0.5}
models: [{name: mlp, arch: mlp, kwargs: {hidden: [32]}}]
recipes:
  - {name: gauss, kind: gaussian_augment, sigma: 0.25, epochs: 2, optimizer: {lr: 3e-3},
     monitor: {n: 32, steps: 2}}
attacks:
  - {name: pgd5, kind: pgd, engine: native, steps: 5, step_size: eps/4}
eval: {n: 60, bootstrap: 20, checklist: false}
certify: {sigma: [train, 0.5], n0: 20, n: 200, predict_n: 100, batch_size: 64, n_examples: 30,
          skip: 2, radii: [0, 0.1, 0.2, 0.4]}
"""
# per example 20 + 200 + 100 = 320 samples; a chunk is 64 passes x 64 rows // 320 = 12 examples


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("smooth")
    (root / "spec.yaml").write_text(SPEC)
    r = advrun("run", str(root / "spec.yaml"), "-o", str(root / "out"), "-q")
    assert r.returncode == 0, r.stderr
    return root / "out"


def _one_run(out):
    (d,) = run_dirs(out).values()
    return d


def test_certified_results_land_in_every_output(reference):
    d = _one_run(reference)
    results = pd.read_csv(reference / "results.csv")
    cert = results[results["scope"] == "certified"]
    assert sorted(set(cert["sigma"])) == [0.25, 0.5]
    assert sorted(set(cert["radius"])) == [0, 0.1, 0.2, 0.4] and set(cert["n"]) == {30}
    assert (cert["eps"] == cert["radius"]).all() and set(cert["norm"]) == {"l2"}
    assert cert["linf_radius"].tolist() == pytest.approx((cert["radius"] / 8).tolist())
    assert len(results[results["scope"] == "smoothed"]) == 2
    for _, g in cert.groupby("sigma"):  # a curve never rises with the radius
        assert g.sort_values("radius")["accuracy"].is_monotonic_decreasing
    table = pd.read_csv(reference / "certified.csv")
    assert len(table) == 8 and set(table["samples"]) == {200} and set(table["n0"]) == {20}
    assert (
        set(table["interval"]) == {"clopper-pearson"}
        and (table["ci_low"] <= table["ci_high"]).all()
    )
    ex = pd.read_parquet(d / "examples.parquet")
    rows = ex[ex["attack"] == "certified[sigma=0.25]"]
    assert list(rows["example"]) == list(range(0, 60, 2))  # every 2nd test example, 30 of them
    certified = rows["certified_radius"] > 0
    assert (rows.loc[certified, "radius"] == rows.loc[certified, "certified_radius"]).all()
    assert rows.loc[rows["abstained"].astype(bool), "radius"].isna().all()
    m = json.loads((d / "metrics.json").read_text())
    assert m["schema_version"] >= 3 and [s["sigma"] for s in m["certified"]] == [0.25, 0.5]
    s = m["certified"][0]
    at0 = (rows["correct"] & ~rows["abstained"].astype(bool)).mean()
    assert s["curve"][0]["accuracy"] == pytest.approx(at0)
    assert s["abstained"] == int(rows["abstained"].sum()) and s["dim"] == 64
    card = json.loads((d / "model_card.json").read_text())
    assert card["certified"][1]["sigma"] == 0.5 and card["certified"][1]["n"] == 200
    html = (reference / "report.html").read_text()
    assert "Certified accuracy against L2 radius (sigma=0.25)" in html
    assert "certified[sigma" not in html.split('id="comparison"')[1].split("</section>")[0]


def test_killed_while_certifying_the_rerun_equals_an_uninterrupted_run(tmp_path, reference):
    (tmp_path / "spec.yaml").write_text(SPEC)
    out = tmp_path / "out"
    fired = tmp_path / "fired.log"
    args = ("run", str(tmp_path / "spec.yaml"), "-o", str(out), "-q")
    killed = advrun(*args, ADVRUN_FAULT="certify", ADVRUN_FAULT_LOG=str(fired))
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
    assert fired.read_text().split() == ["certify"]  # after the first chunk was kept
    again = advrun(*args)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "certified.csv"), pd.read_csv(reference / "certified.csv")
    )
    ours, theirs = (pd.read_parquet(_one_run(o) / "examples.parquet") for o in (out, reference))
    pd.testing.assert_frame_equal(ours, theirs)
    # the first chunk (12 examples x 320 samples) and the attack suite were not redone
    passes = [json.loads((_one_run(o) / "metrics.json").read_text())["eval_passes"]
              for o in (out, reference)]  # fmt: skip
    assert passes[0]["forward_passes"] <= passes[1]["forward_passes"] - 12 * 320


def test_advrun_eval_certifies_a_saved_model(tmp_path, reference):
    ckpt = _one_run(reference) / "checkpoints" / "best.pt"
    state = torch.load(ckpt, weights_only=True)
    saved = tmp_path / "model.pt"
    torch.save(state, saved)
    (tmp_path / "spec.yaml").write_text(SPEC.replace("[train, 0.5]", "0.25"))
    out = tmp_path / "audit"
    r = advrun("eval", str(tmp_path / "spec.yaml"), "--checkpoint", str(saved), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "sigma=0.25: smoothed" in r.stdout and "randomized smoothing (L2)" in r.stdout
    table = pd.read_csv(out / "certified.csv")
    assert set(table["recipe"]) == {"audit"} and set(table["sigma"]) == {0.25}
    ref = pd.read_csv(reference / "certified.csv")
    ref = ref[ref["sigma"] == 0.25].reset_index(drop=True)  # same model, same noise streams
    for col in ("certified_accuracy", "abstained", "acr"):
        assert table[col].tolist() == ref[col].tolist(), col
    assert not math.isnan(table["smoothed_accuracy"].iloc[0])


def test_a_study_searches_the_training_sigma_on_smoothed_and_certified_accuracy(tmp_path):
    spec = (
        SPEC.replace("certify: {sigma: [train, 0.5]", "certify: {sigma: train")
        + """\
tune:
  target: {model: mlp, recipe: gauss}
  space: {sigma: {float: [0.1, 0.5]}}
  objectives:
    - {maximize: smoothed_accuracy}
    - {maximize: certified_accuracy, radius: 0.1}
  trials: 2
"""
    )
    (tmp_path / "spec.yaml").write_text(spec.replace("epochs: 2", "epochs: 1"))
    r = advrun("tune", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out" / "tune" / "summary.json").read_text())
    assert summary["objectives"] == ["smoothed_accuracy", "certified_accuracy@r=0.1"]
    for trial in summary["trials"]:  # each value is its run's own certification at its sigma
        (d,) = [p for p in (tmp_path / "out" / "runs").iterdir() if p.name == trial["run_id"]]
        (level,) = json.loads((d / "metrics.json").read_text())["certified"]
        assert level["sigma"] == pytest.approx(trial["params"]["sigma"])
        assert trial["values"] == [level["smoothed_accuracy"], level["curve"][1]["accuracy"]]
