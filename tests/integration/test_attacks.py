"""Every attack kind on a trained digits CNN: native against ART, threat model kept, FAB's
projection exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from digits_model import CPU, trained
from noise import assert_same_accuracy
from resolved import attack
from scipy.optimize import linprog, minimize

from runner.attacks.kernels.fab import hyperplane_box_projection
from runner.attacks.runner import generate
from runner.catalog import ATTACKS
from runner.models import build_model


def correct(model, x, y) -> np.ndarray:
    with torch.no_grad():
        return (model(x).argmax(1) == y).cpu().numpy()


def accuracy(model, x, y) -> float:
    return float(correct(model, x, y).mean())


def run(cfg, x, y, seed=0):
    """The adversarial examples and, per example, whether the model still gets them right."""
    model, data = trained()
    gen = torch.Generator().manual_seed(seed)
    x_adv = generate(model, x, y, attack(**cfg), (0.0, 1.0), data.num_classes, None, gen)
    return x_adv, correct(model, x_adv, y)


PGD = {"kind": "pgd", "steps": 20, "restarts": 1, "random_start": True}
# without a random start both engines are deterministic: same algorithm, same numbers
PGD0 = {**PGD, "random_start": False}
APGD = {"kind": "apgd", "targeted": False, "n_targets": 9, "steps": 50, "restarts": 1}


@pytest.mark.parametrize(
    "cfg",
    [
        {"kind": "fgsm", "norm": "linf", "eps": 0.05},
        {**PGD0, "norm": "linf", "eps": 0.05, "step_size": 0.0125},
        {**PGD0, "norm": "l2", "eps": 0.5, "step_size": 0.125},
        {**PGD, "norm": "linf", "eps": 0.05, "step_size": 0.0125},
    ],
    ids=["fgsm", "pgd-linf", "pgd-l2", "pgd-linf-random-start"],
)
def test_native_agrees_with_art(cfg):
    """Native and ART engines on the same model and the 359 test digits, within 1 point (3
    examples) or else within chance (noise.assert_same_accuracy: McNemar p >= 0.001).

    Without a random start both engines run the same deterministic algorithm: chance plays no
    part and only float rounding could flip an example at the boundary; measured here 0
    discordant examples for fgsm, pgd-linf and pgd-l2 (paired SE 0). With a random start the
    streams differ (torch vs NumPy), but at this eps the outcome did not move over 5 seeds of
    either engine (0 discordant: SE 0). It still fails a broken engine: tried here, native PGD
    with eps 0.04 instead of 0.05 ended 16 examples above ART, all one way (p 3e-5), and a
    single step instead of 20 ended 40 above (p 2e-12).
    """
    model, data = trained()
    x, y = data.x_test, data.y_test
    _, native = run({**cfg, "engine": "native"}, x, y)
    _, art = run({**cfg, "engine": "art"}, x, y)
    # the attack bites at this eps. Measured (clean 0.967): fgsm 0.841, pgd-linf (both) 0.830,
    # pgd-l2 0.529; the smallest gap, fgsm's 0.125 (45 of 359 examples broken), has an SE of
    # sqrt(0.125 * 0.875 / 359) = 0.017: 4.3 SE above 0.05 (the bound was 0.1: 1.4 SE)
    assert accuracy(model, x, y) - native.mean() > 0.05
    assert_same_accuracy(native, art, 0.01, what=f"native vs ART {cfg['kind']}")


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_native_apgd_agrees_with_art_apgd(loss):
    """As above (measured: 0 discordant examples with CE, 3 with DLR: 0.836 vs 0.833, a paired
    SE of 0.5 points); and APGD at least about as strong as PGD-20 on the same examples
    (measured: the same accuracy with CE, 2 examples apart with DLR)."""
    model, data = trained()
    x, y = data.x_test, data.y_test
    cfg = {**APGD, "loss": loss, "norm": "linf", "eps": 0.05}
    _, native = run({**cfg, "engine": "native"}, x, y)
    _, art = run({**cfg, "engine": "art"}, x, y)
    assert_same_accuracy(native, art, 0.01, what=f"native vs ART apgd-{loss}")
    # and APGD is at least as strong as PGD-20 with the usual step
    _, pgd = run({**PGD, "engine": "native", "norm": "linf", "eps": 0.05,
                  "step_size": 0.0125}, x, y)  # fmt: skip
    assert_same_accuracy(native, pgd, 0.01, at_most=True, what=f"apgd-{loss} vs pgd20")


CHEAP = {
    "fgsm": {},
    "pgd": {"steps": 5, "step_size": 0.02, "restarts": 1, "random_start": True},
    "apgd": {"loss": "dlr", "targeted": True, "n_targets": 3, "steps": 10, "restarts": 1},
    "fab": {"steps": 10, "n_targets": 2},
    "square": {"queries": 50, "p_init": 0.8, "restarts": 1},
    "cw_l2": {"confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 2, "steps": 5,
              "initial_const": 0.01},
    "cw_linf": {"confidence": 0.0, "learning_rate": 0.01, "steps": 5, "initial_const": 1.0,
                "largest_const": 1.5, "decrease_factor": 0.3},  # ART loops per example
    "deepfool": {"steps": 10, "overshoot": 0.02, "n_grads": 10},
    "autoattack": {},  # the composition follows the engine (standard: native, ART's: art)
}  # fmt: skip


def _engines(kind: str) -> list[tuple[str, str]]:
    norms = ATTACKS.load(kind).norms
    return [(kind, engine) for engine in norms]


ENGINES = [
    # ART's C&W Linf loops over examples, tau and c: tens of seconds even for 4 examples
    pytest.param(k, e, marks=[pytest.mark.slow] if k == "cw_linf" else [], id=f"{k}-{e}")
    for name in ATTACKS.names()
    for k, e in _engines(name)
]


@pytest.mark.parametrize(("kind", "engine"), ENGINES)
def test_every_attack_stays_in_its_threat_model(kind, engine):
    model, data = trained()
    x, y = data.x_test[:24], data.y_test[:24]
    norm = ATTACKS.load(kind).norms[engine][0]
    eps = 0.1 if norm == "linf" else 1.0
    cfg = {"kind": kind, "engine": engine, "norm": norm, "eps": eps, **CHEAP[kind]}
    if kind == "autoattack":
        cfg["composition"] = "standard" if engine == "native" else "art"
    if kind in ("autoattack", "cw_linf"):  # slow per example: a few, and a large eps for
        x, y, eps = x[:4], y[:4], 0.3  # autoattack, whose first part then breaks all of them
        cfg["eps"] = eps
    x_adv, ok = run(cfg, x, y)
    acc = ok.mean()
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert dist.max() <= eps * (1 + 1e-5) + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert model.training is False  # ART must not leave the model in training mode
    assert acc <= accuracy(model, x, y)


def test_cw_linf_factory_passes_the_spec_parameters():
    from runner.attacks.art_attacks import make_classifier
    from runner.attacks.cw_linf import CWLinf

    model, data = trained()
    clf = make_classifier(model, (1, 8, 8), 10, (0.0, 1.0), CPU)
    a = CWLinf(attack("cw_linf", eps=0.1, batch_size=64, **CHEAP["cw_linf"])).art(clf)
    assert (a.max_iter, a.initial_const, a.largest_const, a.decrease_factor) == (5, 1.0, 1.5, 0.3)


def test_fab_and_square_are_real_attacks():
    """On 128 test digits at eps 0.1 (measured: clean 0.969, PGD-20 0.453, FAB 0.453 with 0
    discordant examples, Square 0.594). Square vs clean: a drop of 0.375 against 0.2 required,
    (0.375 - 0.2) / SE 0.054 (sqrt(48 discordant) / 128) = 3.2 SE, and the drop is no coin
    toss: a black box that finds nothing leaves clean accuracy. Square vs PGD: Square 0.14
    above, 18 examples that only PGD breaks; it fails only if Square beats PGD significantly."""
    model, data = trained()
    x, y = data.x_test[:128], data.y_test[:128]
    clean = correct(model, x, y)
    _, pgd = run({**PGD, "engine": "native", "norm": "linf", "eps": 0.1,
                  "step_size": 0.025}, x, y)  # fmt: skip
    _, fab = run({"kind": "fab", "engine": "native", "norm": "linf", "eps": 0.1,
                  "steps": 30, "n_targets": 3}, x, y)  # fmt: skip
    _, sq = run({"kind": "square", "engine": "native", "norm": "linf", "eps": 0.1,
                 "queries": 500, "p_init": 0.8, "restarts": 1}, x, y)  # fmt: skip
    assert_same_accuracy(fab, pgd, 0.05, at_most=True, what="fab vs pgd20")
    assert sq.mean() < clean.mean() - 0.2, (sq.mean(), clean.mean())  # a black box finds most
    # but not more than white-box PGD on a healthy model
    assert_same_accuracy(pgd, sq, 0.02, at_most=True, what="pgd20 vs square")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_projection_is_the_minimal_norm_point(norm):
    rng = np.random.default_rng(0)
    for _ in range(20):
        dim = 6
        p, w = rng.random(dim), rng.normal(size=dim)
        w[rng.integers(dim)] = 0.0  # a zero coordinate must not break it
        b = float(w @ rng.random(dim))  # a hyperplane that meets the box
        d = hyperplane_box_projection(
            torch.tensor(p[None]),
            torch.tensor(w[None]),
            torch.tensor([b], dtype=torch.float64),
            0.0,
            1.0,
            norm,
        )[0].numpy()
        assert np.all(p + d >= -1e-9) and np.all(p + d <= 1 + 1e-9)
        assert w @ (p + d) == pytest.approx(b, abs=1e-7)
        if norm == "linf":  # LP: min t s.t. |d_i| <= t, w.d = b - w.p, box
            c = np.r_[np.zeros(dim), 1.0]
            a_ub = np.block([[np.eye(dim), -np.ones((dim, 1))], [-np.eye(dim), -np.ones((dim, 1))]])
            res = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * dim), A_eq=np.r_[w, 0.0][None],
                          b_eq=[b - w @ p], bounds=[(-q, 1 - q) for q in p] + [(0, None)])  # fmt: skip
            assert np.abs(d).max() == pytest.approx(res.fun, abs=1e-6)
        else:
            res = minimize(lambda v: v @ v, np.zeros(dim), method="SLSQP",
                           constraints=[{"type": "eq", "fun": lambda v, w=w, r=b - w @ p: w @ v - r}],
                           bounds=[(-q, 1 - q) for q in p], options={"ftol": 1e-12})  # fmt: skip
            assert np.linalg.norm(d) == pytest.approx(np.linalg.norm(res.x), abs=1e-5)


@pytest.mark.gpu
def test_native_attacks_on_cuda_match_cpu():
    model, data = trained()
    x, y = data.x_test[:128], data.y_test[:128]
    dev = torch.device("cuda")
    gpu = build_model("small_cnn", data.input_shape, data.num_classes).to(dev).eval()
    gpu.load_state_dict(model.state_dict())
    # CPU and GPU draw different random streams (Square, FAB's restarts): 3 points (4 examples
    # of 128) or else a gap McNemar does not call real at p < 0.001 (not measured here: no GPU)
    for cfg in (
        {**APGD, "loss": "ce", "norm": "linf", "eps": 0.05},
        {"kind": "fab", "norm": "linf", "eps": 0.05, "steps": 20, "n_targets": 2},
        {"kind": "square", "norm": "linf", "eps": 0.05, "queries": 200, "p_init": 0.8,
         "restarts": 1},
    ):  # fmt: skip
        full = {"engine": "native", **cfg}
        _, on_cpu = run(full, x, y)
        gen = torch.Generator(device=dev).manual_seed(0)
        xa = generate(gpu, x.to(dev), y.to(dev), attack(**full), (0.0, 1.0), 10, None, gen)
        assert xa.device.type == "cuda"
        on_gpu = correct(gpu, xa, y.to(dev))
        assert_same_accuracy(on_gpu, on_cpu, 0.03, what=f"{cfg['kind']} cuda vs cpu")
