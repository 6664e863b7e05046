"""Every recipe through the real CLI (both engines), the loop's guardrails, and the losses.

Small and quick: an MLP on 300 digits for 2 epochs. The numbers that need real training
(parity with ART, the robustness ordering) are in test_recipes_parity.py (slow).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from runner.catalog import RECIPES
from runner.cli import main
from runner.compile import Threat
from runner.recipes.base import Recipe, TrainContext
from runner.recipes.fgsm_rs import FGSMRSTraining
from runner.recipes.mart import mart_loss
from runner.recipes.trades import trades_loss
from runner.spec.recipes import RECIPE_SPECS

COMMON = "epochs: 2, batch_size: 100, monitor: {n: 32, steps: 2}, optimizer: {lr: 0.01}"
ITER = "steps: 3, step_size: eps/2"
EXTRA = {"pgd": ITER, "trades": ITER, "mart": ITER, "fgsm_rs": "", "gaussian_augment": "sigma: 0.25",
         "smooth_adv": "sigma: 0.25, eps: 0.5, steps: 2, samples: 2"}  # fmt: skip
ART_EXTRA = {"fgsm_rs": "optimizer: {name: sgd, lr: 0.05}"}
# free replays each batch m times over ceil(epochs / m) passes: 4 epochs with m 2 make the two
# passes of the other recipes
SPEC_EPOCHS = {"free": "epochs: 4, m: 2"}


def recipe_line(kind: str, engine: str) -> str:
    common = COMMON.replace("epochs: 2", SPEC_EPOCHS[kind]) if kind in SPEC_EPOCHS else COMMON
    parts = [f"name: {kind}-{engine}", f"kind: {kind}", f"engine: {engine}", common]
    if EXTRA.get(kind):
        parts.append(EXTRA[kind])
    line = ", ".join(parts)
    if engine == "art" and kind in ART_EXTRA:
        line = line.replace("optimizer: {lr: 0.01}", ART_EXTRA[kind])
    if (kind, engine) == ("standard", "native"):
        line += ", amp: bf16, channels_last: true"
    return f"  - {{{line}}}"


ENGINES = [(k, "native") for k in RECIPES.names()] + [
    (k, "art") for k in RECIPES.names() if RECIPES.load(k).art_trainer
]

SPEC = """\
name: recipes
seeds: [0]
device: cpu
data: {{dataset: digits, limit: 200}}
threat: {{norm: linf, eps: 0.1}}
models:
  - {{name: m, arch: mlp, kwargs: {{hidden: [64]}}}}
recipes:
{recipes}
poisoning: {{trigger: pattern, target: 0, fraction: 0.1}}
attacks:
  - {{name: pgd5, kind: pgd, steps: 5, engine: native}}
eval: {{n: 60, bootstrap: 50, checklist: false}}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    text = SPEC.format(recipes="\n".join(recipe_line(k, e) for k, e in ENGINES))
    out = root / "out"
    rc = main(["run", str(write(root / "spec.yaml", text)), "-o", str(out), "-q"])
    runs = {p.name.split("@")[1]: p for p in (out / "runs").iterdir()}
    return rc, out, runs


def test_the_whole_family_runs(experiment):
    rc, out, runs = experiment
    assert rc == 0
    assert len(runs) == len(ENGINES)
    df = pd.read_csv(out / "results.csv")
    assert set(df["attack"]) >= {"clean", "pgd5", "worst_case", "asr"}


@pytest.mark.parametrize(("kind", "engine"), ENGINES, ids=[f"{k}-{e}" for k, e in ENGINES])
def test_each_recipe_keeps_its_guardrail_records(experiment, kind, engine):
    _, _, runs = experiment
    d = runs[f"{kind}-{engine}"]
    status = json.loads((d / "status.json").read_text())
    assert status["state"] == "done"
    epochs = pd.read_csv(d / "epochs.csv")
    # the single-step recipes' guard (on by default but on fgsm_augment) measures FGSM too
    watched = ["val_fgsm"] if kind in ("fgsm_rs", "n_fgsm", "grad_align") else []
    assert list(epochs.columns) == [
        "epoch",
        "loss",
        "lr",
        "eps",
        "val_clean",
        "val_robust",
        *watched,
        "seconds",
        "forward_passes",
        "backward_passes",
    ]
    if watched:
        assert epochs["val_fgsm"].between(0, 1).all()
    assert list(epochs["epoch"]) == [1, 2]
    assert (
        epochs["backward_passes"].is_monotonic_increasing and epochs["backward_passes"].iloc[0] > 0
    )
    assert epochs["val_clean"].between(0, 1).all() and epochs["val_robust"].between(0, 1).all()
    assert (epochs["val_robust"] <= epochs["val_clean"] + 1e-9).all()
    assert (d / "checkpoints" / "last.pt").exists() and (d / "checkpoints" / "best.pt").exists()
    # best = highest validation robust accuracy (ties: clean), Rice et al. 2020, for recipes that
    # craft perturbations; the highest clean accuracy (ties: robust) for the others
    adversarial = RECIPES.load(kind).adversarial
    first, second = ("val_robust", "val_clean") if adversarial else ("val_clean", "val_robust")
    key = list(zip(epochs[first], epochs[second], strict=True))
    assert status["best_epoch"] == 1 + max(range(len(key)), key=lambda i: (key[i], -i))
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["checkpoint"] == "best" and metrics["stopped_early"] is None
    assert metrics["train_passes"]["backward_passes"] > 0
    # the attack success rate's fields (issue 21 added the defense's beside them)
    assert set(metrics["poisoning"]) >= {
        "asr",
        "n",
        "ci_low",
        "ci_high",
        "target",
        "trigger",
        "fraction",
    }
    if engine == "native":
        assert epochs["loss"].notna().all()
    assert (epochs["eps"] > 0).all() == adversarial  # the training eps, of those that have one


def test_amp_and_channels_last_are_ignored_with_a_note_on_cpu(experiment):
    _, _, runs = experiment
    log = (runs["standard-native"] / "log.txt").read_text()
    assert "amp and channels_last apply on CUDA only; ignored on cpu" in log


def test_art_engine_uses_the_spec_schedule(experiment):
    # fgsm_rs defaults to the cyclic schedule: 0 -> peak at 40% -> 0, per batch, in ART too
    _, _, runs = experiment
    lr = pd.read_csv(runs["fgsm_rs-art"] / "epochs.csv")["lr"]
    assert lr.iloc[-1] == pytest.approx(0.0, abs=1e-12) and 0 < lr.iloc[0] <= 0.05


SINGLE = """\
name: single
seeds: [0]
device: cpu
data: {{dataset: digits, limit: 200}}
threat: {{norm: linf, eps: 0.1}}
models:
  - {{name: m, arch: mlp, kwargs: {{hidden: [64]}}}}
recipes:
  - {recipe}
attacks:
  - {{name: pgd5, kind: pgd, steps: 5, engine: native}}
eval: {{n: 60, bootstrap: 50, checklist: false, checkpoint: {checkpoint}}}
"""


def run_single(tmp_path: Path, recipe: str, checkpoint: str = "best") -> tuple[int, Path]:
    spec = write(tmp_path / "spec.yaml", SINGLE.format(recipe=recipe, checkpoint=checkpoint))
    out = tmp_path / "out"
    rc = main(["run", str(spec), "-o", str(out), "-q"])
    (d,) = (out / "runs").iterdir()
    return rc, d


@pytest.mark.parametrize(
    ("recipe", "diagnosis"),
    [
        (
            "{name: r, kind: pgd, epochs: 3, batch_size: 32, steps: 2, step_size: eps/2, "
            "optimizer: {name: sgd, lr: 1e12}}",
            r"loss became non-finite at epoch 1, batch \d+ \(lr 1e\+12\)",
        ),
        (
            "{name: r, kind: fgsm_augment, engine: art, epochs: 3, batch_size: 32, optimizer: {name: sgd, lr: 1e12}}",
            r"ART's trainer left non-finite weights in epoch 1 \(lr 1e\+12",
        ),
    ],
    ids=["native", "art"],
)
def test_divergence_fails_the_run_with_a_diagnosis(tmp_path, capsys, recipe, diagnosis):
    rc, d = run_single(tmp_path, recipe)
    assert rc == 1
    status = json.loads((d / "status.json").read_text())
    assert status["state"] == "failed" and re.search(diagnosis, status["diagnosis"]), status
    assert not (d / "metrics.json").exists() and not (d / "checkpoints" / "last.pt").exists()
    assert re.search(diagnosis, capsys.readouterr().out)


def test_early_stop_restores_and_evaluates_the_best_epoch(tmp_path, monkeypatch):
    calls = []

    def collapse_at_3(self, history):
        calls.append(len(history))
        return "collapsed (test)" if len(history) == 3 else None

    monkeypatch.setattr(FGSMRSTraining, "should_stop", collapse_at_3)
    rc, d = run_single(
        tmp_path,
        f"{{name: r, kind: fgsm_rs, epochs: 6, {COMMON.replace('epochs: 2, ', '')}}}",
        "last",
    )
    assert rc == 0 and calls == [1, 2, 3]
    status = json.loads((d / "status.json").read_text())
    assert status["stopped_early"] == "collapsed (test)" and status["stopped_epoch"] == 3
    metrics = json.loads((d / "metrics.json").read_text())
    # eval.checkpoint is 'last', but a stopped run restored its best epoch: that is evaluated
    assert metrics["checkpoint"] == "best" and metrics["stopped_epoch"] == 3
    assert len(pd.read_csv(d / "epochs.csv")) == 3
    assert "restored epoch" in (d / "log.txt").read_text()


@pytest.mark.parametrize("drop", [0.2, None])
def test_the_real_guard_stops_a_collapsing_fgsm_run_through_the_cli(tmp_path, monkeypatch, drop):
    """Plain FGSM (fgsm_augment, ratio 1) through ``advrun run``: the validation PGD accuracy
    rises, then collapses at epoch 3 (scripted: digits' small runs do not collapse in a test's
    time); the recipe's own guard stops the run there and the best epoch is evaluated."""
    import runner.train.loop as loop

    script = iter([(0.8, 0.3), (0.85, 0.5), (0.95, 0.05), (0.95, 0.04)])
    monkeypatch.setattr(loop, "validate", lambda *a, **k: next(script))
    guard = "" if drop is None else f", overfit_drop: {drop}"
    rc, d = run_single(
        tmp_path,
        f"{{name: r, kind: fgsm_augment, ratio: 1.0{guard}, epochs: 4, "
        f"{COMMON.replace('epochs: 2, ', '')}}}",
        "last",
    )
    assert rc == 0
    status = json.loads((d / "status.json").read_text())
    metrics = json.loads((d / "metrics.json").read_text())
    epochs = pd.read_csv(d / "epochs.csv")
    if drop is None:  # off: all four epochs, the last one evaluated
        assert status["stopped_early"] is None and len(epochs) == 4
        assert metrics["checkpoint"] == "last"
        return
    assert status["stopped_epoch"] == 3 and len(epochs) == 3
    assert status["stopped_early"] == (
        "catastrophic overfitting: validation PGD accuracy fell from 0.500 (epoch 2) to 0.050 at "
        "epoch 3 (more than overfit_drop 0.2)"
    )
    assert metrics["checkpoint"] == "best" and metrics["best_epoch"] == 2
    assert "restored epoch 2" in (d / "log.txt").read_text()


@pytest.mark.parametrize("guard", ["overfit_drop: 0.2", "overfit_drop: 0.2, overfit_gap: null", ""])
def test_the_fgsm_pgd_gap_stops_single_step_overfitting_through_the_cli(
    tmp_path, monkeypatch, guard
):
    """Single-step overfitting without a fall (Kim et al. 2021): validation PGD accuracy stays
    flat while FGSM accuracy soars (scripted: epoch 3's FGSM accuracy is 0.37 above PGD's). The
    guard's gap (default overfit_gap 0.3) stops the run there and the best epoch is evaluated;
    FGSM accuracy is measured, its passes counted and written (val_fgsm) only where it watches."""
    import runner.train.loop as loop

    pgd = iter([(0.6, 0.30), (0.7, 0.35), (0.8, 0.33), (0.85, 0.32)])
    fgsm = iter([0.40, 0.50, 0.70, 0.75])
    monkeypatch.setattr(loop, "validate", lambda *a, **k: next(pgd))
    real_fgsm, fgsm_calls = loop.validate_fgsm, []

    def scripted_fgsm(model, x, y, ctx, bs=512):
        real_fgsm(model, x, y, ctx, bs)  # the real attack runs (and its passes count)
        fgsm_calls.append(len(x))
        return next(fgsm)

    monkeypatch.setattr(loop, "validate_fgsm", scripted_fgsm)
    fields = f", {guard}" if guard else ""
    rc, d = run_single(
        tmp_path,
        f"{{name: r, kind: fgsm_augment, ratio: 1.0{fields}, epochs: 4, "
        f"{COMMON.replace('epochs: 2, ', '')}}}",
        "last",
    )
    assert rc == 0
    status = json.loads((d / "status.json").read_text())
    metrics = json.loads((d / "metrics.json").read_text())
    epochs = pd.read_csv(d / "epochs.csv")
    if guard != "overfit_drop: 0.2":  # off, or the gap not watched: no FGSM, all four epochs
        assert fgsm_calls == [] and "val_fgsm" not in epochs.columns
        assert status["stopped_early"] is None and len(epochs) == 4
        assert metrics["checkpoint"] == "last"
        return
    assert fgsm_calls == [32, 32, 32]
    assert list(epochs.val_fgsm) == pytest.approx([0.40, 0.50, 0.70])
    assert status["stopped_epoch"] == 3 and len(epochs) == 3
    assert status["stopped_early"] == (
        "catastrophic overfitting: validation FGSM accuracy 0.700 exceeds PGD accuracy 0.330 by "
        "0.370 at epoch 3 (more than overfit_gap 0.3)"
    )
    assert metrics["checkpoint"] == "best" and metrics["best_epoch"] == 2
    assert "restored epoch 2" in (d / "log.txt").read_text()


def test_fgsm_monitor_passes_are_counted(tmp_path):
    """The guard's FGSM monitor (one forward and one backward per validation image, plus the
    forward that scores it) adds to the run's passes; turned off, the passes are as before."""
    spec = f"{{name: r, kind: fgsm_augment, ratio: 1.0, {COMMON}"
    (tmp_path / "off").mkdir(), (tmp_path / "on").mkdir()
    _, off = run_single(tmp_path / "off", spec + ", overfit_drop: 0.2, overfit_gap: null}", "last")
    _, on = run_single(tmp_path / "on", spec + ", overfit_drop: 0.2, overfit_gap: 0.99}", "last")
    e_off, e_on = pd.read_csv(off / "epochs.csv"), pd.read_csv(on / "epochs.csv")
    assert list(e_on.forward_passes - e_off.forward_passes) == [2 * 32, 4 * 32]
    assert list(e_on.backward_passes - e_off.backward_passes) == [32, 2 * 32]
    assert list(e_off.columns) == [c for c in e_on.columns if c != "val_fgsm"]
    same = ["loss", "lr", "val_clean", "val_robust"]  # training untouched by the monitor
    assert e_on[same].equals(e_off[same]) and e_on.val_fgsm.between(0, 1).all()


def test_the_gap_guard_on_every_single_step_recipe():
    def rows(robust, fgsm):
        return [
            {"epoch": i + 1, "val_robust": r, "val_fgsm": f}
            for i, (r, f) in enumerate(zip(robust, fgsm, strict=True))
        ]

    for kind, fields in [("fgsm_rs", {"alpha": 0.125}), ("n_fgsm", {"alpha": 0.1}),
                         ("grad_align", {"alpha": 0.1}), ("fgsm_augment", {"ratio": 1.0})]:  # fmt: skip
        recipe = RECIPES.load(kind)(_spec(kind, eps=0.1, overfit_drop=0.2, **fields), _ctx())
        assert recipe.watches_fgsm()
        assert recipe.should_stop(rows([0.5, 0.5], [0.6, 0.79])) is None  # 0.29: within
        reason = recipe.should_stop(rows([0.5, 0.5], [0.6, 0.81]))
        assert "FGSM accuracy 0.810 exceeds PGD accuracy 0.500 by 0.310 at epoch 2" in reason
        assert "no epoch was ever robust" not in reason
        first = recipe.should_stop(rows([0.07], [0.45]))  # the collapse from the first epoch
        assert "epoch 1" in first and "no epoch was ever robust" in first
        never = recipe.should_stop(rows([0.3, 0.2], [0.65, 0.55]))
        assert "no epoch was ever robust (the gap exceeded overfit_gap from the first" in never
        chance = recipe.should_stop(rows([0.05, 0.09, 0.02], [0.1, 0.2, 0.4]))
        assert "epoch 3" in chance and (
            "no epoch was ever robust (the best validation PGD accuracy, 0.090 (epoch 2), is at "
            "most chance (1/10))" in chance
        )
        assert recipe.should_stop(rows([0.5], [float("nan")])) is None  # monitor off
        off = RECIPES.load(kind)(
            _spec(kind, eps=0.1, overfit_drop=0.2, overfit_gap=None, **fields), _ctx()
        )
        assert not off.watches_fgsm() and off.should_stop(rows([0.07], [0.45])) is None
    assert not RECIPES.load("pgd")(_spec("pgd", eps=0.1), _ctx()).watches_fgsm()
    assert not RECIPES.load("fgsm_augment")(_spec("fgsm_augment", eps=0.1), _ctx()).watches_fgsm()


def history(robust: list[float]) -> list[dict]:
    return [{"epoch": i + 1, "val_robust": r} for i, r in enumerate(robust)]


@pytest.mark.parametrize(
    ("robust", "stops"),
    [
        ([0.3, 0.5, 0.6, 0.05], True),  # the collapse of Wong et al.'s Figure 1
        ([0.3, 0.5, 0.6, 0.45], False),  # a dip within the tolerance
        ([0.3, 0.5, 0.6, 0.39], True),  # 21 points below the best epoch
        ([0.6], False),
        ([0.5, float("nan")], False),  # monitoring off
    ],
)
def test_catastrophic_overfitting_guard(robust, stops):
    recipe = FGSMRSTraining(_spec("fgsm_rs", eps=0.1, alpha=0.125, overfit_drop=0.2), _ctx())
    reason = recipe.should_stop(history(robust))
    assert bool(reason) == stops
    if stops:
        assert "catastrophic overfitting" in reason and "epoch 3" in reason
    assert (
        FGSMRSTraining(
            _spec("fgsm_rs", eps=0.1, alpha=0.125, overfit_drop=None), _ctx()
        ).should_stop(history(robust))
        is None
    )


@pytest.mark.parametrize(
    ("kind", "fields"),
    [("n_fgsm", {"alpha": 0.1}), ("grad_align", {"alpha": 0.1}), ("fgsm_augment", {"ratio": 1.0})],
)
def test_the_other_single_step_recipes_have_the_same_guard(kind, fields):
    recipe = RECIPES.load(kind)(_spec(kind, eps=0.1, overfit_drop=0.2, **fields), _ctx())
    reason = recipe.should_stop(history([0.3, 0.5, 0.6, 0.05]))
    assert "catastrophic overfitting" in reason and "epoch 3" in reason
    assert recipe.should_stop(history([0.3, 0.5, 0.6, 0.45])) is None
    off = RECIPES.load(kind)(_spec(kind, eps=0.1, overfit_drop=None, **fields), _ctx())
    assert off.should_stop(history([0.3, 0.5, 0.6, 0.05])) is None


def test_fgsm_augment_guard_is_off_by_default_and_needs_validation():
    """Opt-in for fgsm_augment: specs that run it without validation stay valid (and keep their
    run ids); turned on, it asks for validation like the other single-step recipes."""
    assert _spec("fgsm_augment", eps=0.1).overfit_drop is None
    off = RECIPES.load("fgsm_augment")(_spec("fgsm_augment", eps=0.1), _ctx())
    assert off.should_stop(history([0.3, 0.5, 0.6, 0.05])) is None


def _ctx(norm: str = "linf") -> TrainContext:
    return TrainContext(
        torch.device("cpu"), (0.0, 1.0), Threat(norm, 0.1, (0.0, 1.0)), 10, (1, 8, 8)
    )


def _spec(kind: str = "standard", **kw):
    """A recipe's spec model, resolved (eps and step sizes as numbers)."""
    return RECIPE_SPECS[kind].model_validate({"name": kind, "kind": kind, **kw})


def test_mart_loss_is_the_papers_formula():
    g = torch.Generator().manual_seed(0)
    logits, logits_adv = torch.randn(16, 10, generator=g) * 3, torch.randn(16, 10, generator=g) * 3
    y = torch.randint(0, 10, (16,), generator=g)
    beta = 6.0
    p, q = logits.softmax(1).double().numpy(), logits_adv.softmax(1).double().numpy()
    total = 0.0
    for i, t in enumerate(y.tolist()):  # Wang et al. 2020, eq. 9, term by term
        other = max(q[i, k] for k in range(10) if k != t)
        bce = -math.log(q[i, t]) - math.log(1 - other)
        kl = sum(p[i, k] * math.log(p[i, k] / q[i, k]) for k in range(10))
        total += bce + beta * kl * (1 - p[i, t])
    got = mart_loss(logits, logits_adv, y, beta).item()
    assert got == pytest.approx(total / len(y), rel=1e-3)


def test_trades_loss_is_the_papers_formula():
    g = torch.Generator().manual_seed(1)
    logits, logits_adv = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    p, q = logits.softmax(1).double().numpy(), logits_adv.softmax(1).double().numpy()
    ce = np.mean([-math.log(p[i, t]) for i, t in enumerate(y.tolist())])
    kl = np.mean([sum(p[i] * np.log(p[i] / q[i])) for i in range(8)])
    assert trades_loss(logits, logits_adv, y, 2.0).item() == pytest.approx(ce + 2 * kl, rel=1e-4)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("start", ["uniform", "gaussian", "none"])
def test_training_attacks_stay_in_the_threat_model_and_leave_the_weights_alone(norm, start):
    model = _model().train()
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    eps = 0.1 if norm == "linf" else 0.5
    x_adv = Recipe(_spec(), _ctx(norm)).perturb(model, x, y, eps, eps / 2, 4, start=start)
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    assert size.max() > eps / 2  # it moved
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert not x_adv.requires_grad


def test_native_inner_pgd_matches_arts_pgd():
    from art.attacks.evasion import ProjectedGradientDescent

    from runner.attacks.art_attacks import make_classifier

    model = _model().eval()
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    ours = Recipe(_spec(), _ctx()).perturb(model, x, y, 0.1, 0.03, 5, start="none")
    clf = make_classifier(model, (1, 8, 8), 10, (0.0, 1.0), torch.device("cpu"))
    pgd = ProjectedGradientDescent(
        clf, eps=0.1, eps_step=0.03, max_iter=5, num_random_init=0, batch_size=64, verbose=False
    )
    theirs = pgd.generate(x.numpy(), y=y.numpy())
    # deterministic on both sides (no random start): the same steps of +-0.03 and the same
    # clipping, so the pixels agree to float rounding; only a gradient within rounding of 0
    # could flip a sign (not seen here, at 1 or 2 threads)
    assert np.abs(ours.numpy() - theirs).max() < 1e-5


def test_trades_inner_step_raises_the_kl():
    from runner.recipes.trades import kl_sum

    model = _model()
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        p = F.softmax(model(x), dim=1)
    r = Recipe(_spec(), _ctx())
    near = r.perturb(model, x, p, 0.1, 0.05, 0, start="none")
    far = r.perturb(model, x, p, 0.1, 0.025, 5, start="gaussian", loss_fn=kl_sum)
    with torch.no_grad():
        assert kl_sum(model(far), p) > 10 * max(kl_sum(model(near), p).item(), 1e-6)


def test_fgsm_augment_replaces_the_ratio_of_each_batch():
    from runner.recipes.fgsm_augment import FGSMAugmentTraining

    seen = []
    model = _model()
    real = model.forward
    model.forward = lambda t: (seen.append(t.detach().clone()), real(t))[1]
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 10, (10,))
    cfg = _spec("fgsm_augment", eps=0.1, ratio=0.3)
    FGSMAugmentTraining(cfg, _ctx()).batch_loss(model, x, y, 0.0)
    trained = seen[-1]  # the last forward is the training batch
    changed = (trained - x).flatten(1).abs().amax(1) > 1e-6
    assert changed.tolist() == [True] * 3 + [False] * 7  # ceil(0.3 * 10) FGSM examples


def test_eps_warmup_ramps_the_training_eps():
    r = Recipe(_spec("pgd", eps=0.2, step_size=0.05, eps_warmup_epochs=4), _ctx())
    assert [r.eps_at(e) for e in (0, 1, 2, 4, 7)] == pytest.approx([0, 0.05, 0.1, 0.2, 0.2])


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["pgd", "trades"])
def test_bf16_and_channels_last_train_on_cuda(tmp_path, kind):
    recipe = (
        f"{{name: r, kind: {kind}, amp: bf16, channels_last: true, steps: 3, "
        "step_size: eps/2, epochs: 2, batch_size: 64, monitor: {n: 32, steps: 2}}"
    )
    spec = SINGLE.format(recipe=recipe, checkpoint="best").replace(
        "arch: mlp, kwargs: {hidden: [64]}", "arch: small_cnn"
    )
    path = write(tmp_path / "spec.yaml", spec.replace("device: cpu", "device: cuda"))
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "-q"]) == 0
    (d,) = (tmp_path / "out" / "runs").iterdir()
    assert pd.read_csv(d / "epochs.csv")["loss"].notna().all()
    assert "ignored" not in (d / "log.txt").read_text()


def test_gaussian_augment_trains_on_noise_of_its_sigma():
    from runner.recipes.gaussian_augment import GaussianAugmentTraining

    model, seen = _model().train(), []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    x, y = torch.rand(256, 1, 8, 8), torch.randint(0, 10, (256,))
    GaussianAugmentTraining(_spec("gaussian_augment", sigma=0.3), _ctx()).batch_loss(model, x, y, 0)
    noise = (seen[0] - x).flatten()
    # 16,384 draws: the sample std is within 4 standard errors (sigma / sqrt(2 N) = 0.0017) of
    # sigma, the mean within 4 sigma / sqrt(N) = 0.0094 of 0; and nothing is clipped
    assert abs(noise.std().item() - 0.3) < 4 * 0.3 / math.sqrt(2 * noise.numel())
    assert abs(noise.mean().item()) < 4 * 0.3 / math.sqrt(noise.numel())
    assert seen[0].min() < 0 and seen[0].max() > 1


def test_smooth_adv_attacks_the_smoothed_classifier_within_its_l2_ball():
    import torch.nn.functional as F

    from runner.recipes.smooth_adv import SmoothAdvTraining

    model = _model().train()
    cfg = _spec("smooth_adv", sigma=0.25, eps=0.5, steps=4, samples=4)
    recipe = SmoothAdvTraining(cfg, _ctx("linf"))  # the attack is L2 whatever the threat norm
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    noise = 0.25 * torch.randn(32 * 4, 1, 8, 8)
    x_adv = recipe.smooth_pgd(model, x, y, noise, 0.5)
    size = (x_adv - x).flatten(1).norm(dim=1)
    assert (size <= 0.5 + 1e-5).all() and size.max() > 0.25 and 0 <= x_adv.min() <= x_adv.max() <= 1
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())

    def smoothed_loss(z):  # -log of the mean softmax over the same 4 noisy copies
        with torch.no_grad():
            p = F.softmax(model(z.repeat_interleave(4, 0) + noise), 1).view(32, 4, -1).mean(1)
        return F.nll_loss(p.log(), y).item()

    assert smoothed_loss(x_adv) > smoothed_loss(x)  # it ascends the smoothed classifier's loss
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    recipe.batch_loss(model, x, y, 0)
    assert seen == [32 * 4] * 5  # 4 attack steps, then the update on the m = 4 noisy copies


ZOO_CO = """\
name: zoo
seeds: [0]
device: cpu
threads: 1
data: {dataset: digits}
threat: {norm: linf, eps: 0.3}
models: [{name: cnn, arch: small_cnn}]
recipes:
  - {name: fgsm, kind: fgsm_augment, ratio: 1.0, overfit_drop: 0.2, epochs: 30, batch_size: 128,
     optimizer: {name: adam, lr: 0.001}, schedule: {name: constant}, monitor: {n: 180, steps: 10}}
attacks:
  - {name: pgd10, kind: pgd, steps: 10, step_size: eps/4}
eval: {bootstrap: 50, checklist: false}
"""


@pytest.mark.slow
def test_the_gap_stops_real_plain_fgsm_at_eps_03_on_digits(tmp_path):
    """The bench's co-zoo run (docs/performance.md): plain FGSM at eps 0.3 on digits never has a
    robust epoch (validation PGD accuracy below 0.1 throughout), so a fall cannot fire; the
    FGSM-vs-PGD gap does, before the 30 epochs end, and the diagnosis says no epoch was robust."""
    rc = main(["run", str(write(tmp_path / "spec.yaml", ZOO_CO)), "-o", str(tmp_path / "o"), "-q"])
    assert rc == 0
    (d,) = (tmp_path / "o" / "runs").iterdir()
    status = json.loads((d / "status.json").read_text())
    epochs = pd.read_csv(d / "epochs.csv")
    assert 1 <= status["stopped_epoch"] < 30 and len(epochs) == status["stopped_epoch"]
    reason = status["stopped_early"]
    assert reason.startswith("catastrophic overfitting: validation FGSM accuracy"), reason
    assert "more than overfit_gap 0.3" in reason and "no epoch was ever robust" in reason
    last = epochs.iloc[-1]
    assert last.val_fgsm - last.val_robust > 0.3 and (epochs.val_robust < 0.1).all()
    assert json.loads((d / "metrics.json").read_text())["checkpoint"] == "best"
