"""The clean-label backdoor (Turner, Tsipras & Madry 2019): its poisons keep their labels, stay
within eps of the originals outside the trigger, match ART's PoisoningAttackCleanLabelBackdoor
on the same proxy model and images, and run end to end through the CLI (kept across a resume)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from runner.cli import main
from runner.compile import compile_spec
from runner.defenses import clean_label
from runner.spec import load_spec

SPEC = """\
name: cl
seeds: [0]
device: cpu
deterministic: true
data: {dataset: digits}
threat: {norm: linf, eps: 0.2}
models:
  - {name: mlp, arch: mlp, kwargs: {hidden: [128]}}
recipes:
  - {name: standard, kind: standard, epochs: 6, optimizer: {lr: 0.003}, monitor: {n: 64, steps: 2}}
poisoning: {scenario: clean_label, target: 0, fraction: 0.03, engine: native}
attacks:
  - {name: pgd, kind: pgd, steps: 3, step_size: eps/2, engine: native}
eval: {bootstrap: 200, checklist: false, checkpoint: last}
"""
TRIGGER = [(7, 7), (6, 6), (7, 5), (5, 7)]  # ART's add_pattern_bd at distance 1 on 8x8


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    d = tmp_path_factory.mktemp("cl")
    (d / "spec.yaml").write_text(SPEC)
    assert main(["run", str(d / "spec.yaml"), "-o", str(d / "out"), "-q"]) == 0
    (run_dir,) = (d / "out" / "runs").iterdir()
    return d, run_dir


def _proxy_and_images(run_dir):
    """The run's proxy model (trained on the clean set) and its chosen target-class images."""
    from runner.execute.prepare import prepare
    from runner.models import build_for_spec
    from runner.train.loop import load_weights

    run = compile_spec(load_spec(run_dir.parents[2] / "spec.yaml").spec).runs[0]
    data = prepare(run.data, run.threat.pixel_range, torch.device("cpu"))
    proxy = build_for_spec(run.model, data.input_shape, data.num_classes, run.threat.pixel_range)
    load_weights(proxy, run_dir / "poisoning/proxy/checkpoints/last.pt", torch.device("cpu"))
    idx = clean_label.select(data.y_train, run, data.num_classes, data.input_shape)
    return run, proxy.eval(), data.x_train[idx], data.y_train[idx], idx


def test_the_poisons_keep_their_labels_and_stay_within_eps(ran):
    d, run_dir = ran
    run, _, x, y, idx = _proxy_and_images(run_dir)
    blob = torch.load(run_dir / "poisoning/clean_label.pt", weights_only=True)
    assert np.array_equal(blob["indices"].numpy(), idx) and len(idx) == round(0.03 * 1258)
    assert (y == 0).all()  # images of the target class, labels kept
    poisons = blob["x"]
    for r, c in TRIGGER:
        assert (poisons[:, 0, r, c] == 1.0).all()
    mask = torch.ones_like(poisons, dtype=torch.bool)
    for r, c in TRIGGER:
        mask[:, 0, r, c] = False
    delta = (poisons - x)[mask]
    assert delta.abs().max() <= 0.2 + 1e-6 and delta.abs().mean() > 0.05  # perturbed, within eps
    assert poisons.min() >= 0.0 and poisons.max() <= 1.0
    m = json.loads((run_dir / "metrics.json").read_text())
    p = m["poisoning"]
    assert p["scenario"] == "clean_label" and p["poisons"] == len(idx) and p["defense"] == "none"
    # the proxy is the same model trained on the clean set: the trigger's ASR without poisons
    from runner.defenses.metrics import effect
    from runner.execute.prepare import prepare

    data = prepare(run.data, run.threat.pixel_range, torch.device("cpu"))
    _, proxy, *_ = _proxy_and_images(run_dir)
    base = effect(proxy, data.x_test, data.y_test, run.poisoning, (0.0, 1.0), 512, 200).asr
    print(f"\nclean-label ASR {p['asr']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}] (n={p['n']}) "
          f"vs {base.value:.3f} [{base.ci_low:.3f}, {base.ci_high:.3f}] for the same model trained "
          f"on the clean set; clean accuracy {m['results'][0]['accuracy']:.3f}")  # fmt: skip
    assert p["ci_low"] > base.ci_high  # the poisons implant the trigger (measured: see print)


def test_native_poisons_match_arts_clean_label_attack(ran):
    """The same proxy model, images and PGD (10 steps of eps/4 from x, no random start):
    advrun's native PGD and ART's (inside PoisoningAttackCleanLabelBackdoor) give the same
    poisons up to float round-off where a gradient's sign is close to a tie."""
    _, run_dir = ran
    run, proxy, x, y, _ = _proxy_and_images(run_dir)
    native = clean_label.craft(proxy, x, y, run)
    art_run = run.__class__(**{**run.__dict__, "poisoning": run.poisoning.model_copy(
        update={"engine": "art"})})  # fmt: skip
    art = clean_label.craft(proxy, x, y, art_run)
    same = (native - art).abs() <= 1e-5
    print(
        f"\nnative vs ART clean-label poisons: {same.float().mean():.4f} of pixels equal, "
        f"max difference {(native - art).abs().max():.4f}"
    )
    assert same.float().mean() >= 0.99


def test_a_rerun_keeps_the_crafted_poisons(ran):
    d, run_dir = ran
    kept = run_dir / "poisoning" / "clean_label.pt"
    proxy = run_dir / "poisoning/proxy/checkpoints/last.pt"
    stamps = {p: os.stat(p).st_mtime_ns for p in (kept, proxy)}
    before = json.loads((run_dir / "metrics.json").read_text())["poisoning"]
    shutil.rmtree(run_dir / "checkpoints")
    for name in ("metrics.json", "status.json"):
        (run_dir / name).unlink()
    assert main(["run", str(d / "spec.yaml"), "-o", str(d / "out"), "-q"]) == 0
    assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps
    assert json.loads((run_dir / "metrics.json").read_text())["poisoning"] == before
