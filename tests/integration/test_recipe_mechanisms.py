"""The mechanisms of issue 22's recipes, each against a direct computation (exact where exact
arithmetic applies): AWP's perturbation and its exact restoration before the step, the EMA's
closed form, Free-AT's pass count and carried perturbation, N-FGSM's perturbation beyond eps,
GradAlign's regulariser. Small models on random or digits data; no timing, no training quality.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner import expr
from runner.catalog import RECIPES
from runner.compile import Threat
from runner.passes import PassCounter
from runner.recipes.base import TrainContext
from runner.spec.recipes import RECIPE_SPECS, AdversarialRecipeBase
from runner.train.context import FitContext
from runner.train.engines import NativeEngine
from runner.train.loop import fit
from runner.train.optim import make_optimizer, make_scheduler
from runner.train.state import TrainingState

CPU = torch.device("cpu")


def _ctx(counter: PassCounter | None = None, eps: float = 0.1) -> TrainContext:
    return TrainContext(CPU, (0.0, 1.0), Threat("linf", eps, (0.0, 1.0)), 10, (1, 8, 8), counter)


def _recipe(kind: str, counter: PassCounter | None = None, **kw):
    """The kind's recipe at eps 0.1, its step sizes resolved to pixel units as the plan does."""
    model = RECIPE_SPECS[kind]
    fields = {"name": kind, "kind": kind, **kw}
    if issubclass(model, AdversarialRecipeBase):
        cfg = model.model_validate({"eps": 0.1, **fields})
        data = cfg.model_dump()
        for key in model.eps_relative:
            if isinstance(data.get(key), str):
                data[key] = expr.evaluate(data[key], 0.1)
        fields = data
    return RECIPES.load(kind)(model.model_validate(fields), _ctx(counter))


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )


def _data(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


# -- AWP -------------------------------------------------------------------------------------
def test_awp_moves_each_weight_by_gamma_of_its_norm_up_the_loss_and_restores_it_exactly():
    gamma = 0.01
    recipe = _recipe("pgd", step_size=0.05, steps=2, awp={"gamma": gamma})
    model = _model().train()
    (awp,) = recipe.batch_hooks(model, 1)
    x, y = _data()
    batch = recipe.craft(model, x, y, 0.0)
    w0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    loss0 = recipe.loss(model, batch).item()
    # the direct computation: d = ||w|| g / ||g|| per weight matrix, g the loss gradient at w0
    grads = torch.autograd.grad(recipe.loss(model, batch), list(model.parameters()))
    g = dict(zip([k for k, _ in model.named_parameters()], grads, strict=True))
    awp.before_loss(model, batch)
    for k, p in model.named_parameters():
        moved = p.detach() - w0[k]
        if k.endswith("weight"):  # the two Linear weights; biases are left alone
            expected = gamma * w0[k].norm() * g[k] / g[k].norm()
            torch.testing.assert_close(moved, expected, rtol=1e-3, atol=1e-6)
        else:
            assert torch.equal(moved, torch.zeros_like(moved)), k
    assert recipe.loss(model, batch).item() > loss0  # the perturbation climbs the loss
    # the gradient the step uses is the one at the perturbed weights ...
    perturbed = {k: p.detach().clone() for k, p in model.named_parameters()}
    loss = recipe.loss(model, batch)
    loss.backward()
    awp.before_step(model)
    # ... and the weights it is applied to are the unperturbed ones, bit for bit
    assert all(torch.equal(p, w0[k]) for k, p in model.named_parameters())
    twin = _model()
    twin.load_state_dict(perturbed)
    recipe.loss(twin, batch).backward()
    for (k, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=k)


def test_awp_waits_for_its_warmup():
    recipe = _recipe("trades", step_size=0.05, steps=2, awp={"warmup_epochs": 2})
    model = _model().train()
    (awp,) = recipe.batch_hooks(model, 1)
    x, y = _data()
    w0 = [p.detach().clone() for p in model.parameters()]
    awp.before_loss(model, recipe.craft(model, x, y, 1.99))  # epoch index 1 < 2
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))
    awp.before_loss(model, recipe.craft(model, x, y, 2.0))
    assert not all(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))


def test_awp_proxy_passes_count_as_training_cost():
    model = _model().train()
    counter = PassCounter(model)
    recipe = _recipe("pgd", counter, step_size=0.05, steps=2, awp={})
    (awp,) = recipe.batch_hooks(model, 1)
    x, y = _data()
    batch = recipe.craft(model, x, y, 0.0)
    before = counter.as_dict()
    awp.before_loss(model, batch)
    after = counter.as_dict()
    # the proxy's forward and backward on the crafted batch go to the run's counter
    assert after["forward_passes"] - before["forward_passes"] == len(x)
    assert after["backward_passes"] - before["backward_passes"] == len(x)


# -- EMA -------------------------------------------------------------------------------------
class Recorder:
    """A per-batch hook that keeps the trained weights after every optimizer step."""

    key = "recorder"

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    def before_loss(self, model, batch) -> None:
        return None

    def before_step(self, model) -> None:
        return None

    def after_step(self, model) -> None:
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def _epochs_with(recipe, model: torch.nn.Module, hooks: tuple, tmp: Path, epochs: int = 2):
    x, y = _data(96)
    job = FitContext(model, recipe, x, y, x[:0], y[:0], recipe.ctx, 0, tmp, lambda _: None)
    opt = make_optimizer(model, recipe.cfg.optimizer)
    state = TrainingState(model, opt, make_scheduler(opt, recipe.cfg.schedule, 100), hooks=hooks)
    engine = NativeEngine(job, state, x, y, torch.autocast("cpu", enabled=False))
    for epoch in range(epochs):
        engine.run_epoch(epoch, torch.Generator().manual_seed(epoch))
    return state


@pytest.mark.parametrize("ramp", [False, True])
def test_ema_is_the_closed_form_of_the_weights_it_saw(tmp_path, ramp):
    decay, batch_size = 0.8, 32  # 3 steps per epoch
    recipe = _recipe("standard", batch_size=batch_size, ema={"decay": decay, "ramp": ramp,
                                                              "warmup": 1})  # fmt: skip
    model = _model()
    (ema,) = recipe.batch_hooks(model, 3)
    rec = Recorder()
    state = _epochs_with(recipe, model, (ema, rec), tmp_path)
    w = rec.weights
    assert len(w) == 6 and ema.steps == 6
    # warm-up of 1 epoch = 3 steps: the average copies; then decay d_t at step t (0-based)
    decays = [0.0] * 3 + [min(decay, (1 + t) / (10 + t)) if ramp else decay for t in range(3)]
    assert [ema.decay_at(t) for t in range(6)] == pytest.approx(decays)
    for k in w[0]:
        expected = w[0][k].double()
        for t in range(1, 6):
            expected = decays[t] * expected + (1 - decays[t]) * w[t][k].double()
        got = ema.averaged().state_dict()[k].double()
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    # validation, best.pt and last.pt use the average, not the trained weights
    assert state.evaluated_model() is ema.averaged()
    shown = state.evaluated_weights(state.weights())
    assert all(torch.equal(shown[k], v) for k, v in ema.averaged().state_dict().items())
    assert not all(torch.equal(shown[k], v) for k, v in model.state_dict().items())


def test_ema_buffers_follow_the_trained_model_or_are_averaged(tmp_path):
    def bn_model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16),
            torch.nn.ReLU(), torch.nn.Linear(16, 10),
        )  # fmt: skip

    stats = {}
    for buffers in ("copy", "average"):
        recipe = _recipe("standard", batch_size=32, ema={"decay": 0.5, "buffers": buffers})
        model = bn_model()
        (ema,) = recipe.batch_hooks(model, 3)
        _epochs_with(recipe, model, (ema,), tmp_path / buffers)
        mean = ema.averaged()[2].running_mean
        stats[buffers] = (mean, model[2].running_mean)
    copied, trained = stats["copy"]
    assert torch.equal(copied, trained)  # DeepMind's code: the trained model's statistics
    averaged, trained = stats["average"]
    assert not torch.allclose(averaged, trained)


# -- Free-AT ---------------------------------------------------------------------------------
def test_free_makes_the_passes_of_natural_training_and_carries_its_perturbation(tmp_path):
    n, batch_size, epochs, m = 96, 32, 8, 4
    model = _model()
    counter = PassCounter(model)
    recipe = _recipe("free", counter, epochs=epochs, m=m, batch_size=batch_size,
                     monitor={"n": 0})  # fmt: skip
    x, y = _data(n)
    result = fit(FitContext(model, recipe, x, y, x[:0], y[:0], recipe.ctx, 0, tmp_path,
                            lambda _: None))  # fmt: skip
    # ceil(8 / 4) = 2 passes over the data, each batch replayed 4 times: as many optimizer steps,
    # forward and backward passes as 8 epochs of natural training (the paper's N_ep / m)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert counter.as_dict() == {"forward_passes": epochs * n, "backward_passes": epochs * n}
    delta = recipe.carried.delta
    assert delta is not None and delta.shape == (batch_size, 1, 8, 8)
    assert delta.abs().max() == pytest.approx(0.1)  # sign steps of eps, clipped to the ball


def test_free_steps_its_perturbation_with_the_training_steps_own_input_gradient():
    recipe = _recipe("free", m=2, step=0.03)
    model = _model().train()
    (hook,) = recipe.batch_hooks(model, 1)
    x, y = _data(8)
    batch = recipe.craft(model, x, y, 0.0)
    loss = recipe.loss(model, batch)
    loss.backward()  # one backward: the weights' gradient and the perturbation's
    g = recipe.carried.current.grad.clone()
    assert all(p.grad is not None for p in model.parameters())
    hook.before_step(model)
    torch.testing.assert_close(recipe.carried.delta, (0.03 * g.sign()).clamp(-0.1, 0.1))
    again = recipe.craft(model, x, y, 0.0)  # the replay starts from the carried delta
    torch.testing.assert_close(again.x_adv, (x + recipe.carried.delta).clamp(0, 1))


# -- N-FGSM ----------------------------------------------------------------------------------
def test_n_fgsm_goes_beyond_eps_on_purpose_and_stays_in_the_pixel_range():
    model = _model().eval()
    x, y = _data(64)
    x = 0.3 + 0.4 * x  # away from the pixel bounds, so that only the recipe limits the step
    torch.manual_seed(0)
    x_adv = _recipe("n_fgsm").craft(model, x, y, 0.0).x_adv
    size = (x_adv - x).abs().flatten(1).amax(1)
    assert (size > 0.1 + 1e-3).all()  # beyond the eps ball: k + alpha reaches 3 eps
    assert (size <= 0.3 + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    clipped = _recipe("n_fgsm", clip="eps").craft(model, x, y, 0.0).x_adv
    assert (clipped - x).abs().max() <= 0.1 + 1e-6


def test_n_fgsm_is_noise_plus_a_signed_step():
    model = _model().eval()
    x, y = _data(16)
    x = 0.3 + 0.4 * x
    torch.manual_seed(1)
    x_adv = _recipe("n_fgsm", noise="2*eps", alpha="eps").craft(model, x, y, 0.0).x_adv
    torch.manual_seed(1)
    eta = (2 * torch.rand(x.shape) - 1) * 0.2  # the same draw: uniform in [-2 eps, 2 eps]
    eta.requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x + eta), y, reduction="sum"), eta)
    torch.testing.assert_close(x_adv, (x + eta.detach() + 0.1 * g.sign()).clamp(0, 1))


# -- GradAlign -------------------------------------------------------------------------------
def test_grad_align_regulariser_is_lambda_times_one_minus_the_mean_cosine():
    lam = 0.7
    recipe = _recipe("grad_align", **{"lambda": lam})
    model = _model().train()
    x, y = _data(16)
    batch = recipe.craft(model, x, y, 0.0)
    torch.manual_seed(3)
    reg = recipe.regulariser(model, batch)
    # direct: the FGSM gradient at x, the gradient at x + eta with the same eta, per example
    torch.manual_seed(3)
    eta = (2 * torch.rand(x.shape) - 1) * 0.1
    grads = []
    for point in (x, (x + eta).clamp(0, 1)):
        p = point.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(F.cross_entropy(model(p), y, reduction="sum"), p)[0])
    a, b = (gr.flatten(1).double().numpy() for gr in grads)
    cos = [
        float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))) for u, v in zip(a, b, strict=True)
    ]
    assert reg.item() == pytest.approx(lam * (1 - np.mean(cos)), rel=1e-5)
    # double backpropagation: the regulariser has a gradient w.r.t. the weights
    grads_w = torch.autograd.grad(reg, list(model.parameters()), allow_unused=True)
    assert any(gw is not None and gw.abs().sum() > 0 for gw in grads_w)
    assert model.training


def test_grad_align_leaves_out_zero_gradients_and_is_zero_at_lambda_zero():
    from runner.recipes.grad_align import alignment

    g1 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    g2 = torch.tensor([[1.0, 1.0], [3.0, 0.0], [2.0, 2.0]])
    assert alignment(g1, g2).item() == pytest.approx((math.sqrt(0.5) + 1.0) / 2)
    assert alignment(torch.zeros(2, 2), g2[:2]).item() == 1.0
    recipe = _recipe("grad_align", **{"lambda": 0})
    model = _model()
    x, y = _data(4)
    assert recipe.regulariser(model, recipe.craft(model, x, y, 0.0)).item() == 0.0


def test_plain_fgsm_of_fgsm_rs_starts_from_x():
    # random_start: false is plain FGSM: one signed step of eps (alpha 1.25 eps, clipped) from x
    model = _model().eval()
    x, y = _data(16)
    x = 0.3 + 0.4 * x
    plain = _recipe("fgsm_rs", random_start=False, alpha=0.125)
    p = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(p), y, reduction="sum"), p)
    seen = []
    real = model.forward
    model.forward = lambda t: (seen.append(t.detach().clone()), real(t))[1]
    plain.batch_loss(model, x, y, 0.0)
    torch.testing.assert_close(seen[-1], (x + 0.1 * g.sign()).clamp(0, 1))


def test_an_ema_run_evaluates_and_publishes_the_average(tmp_path):
    import json

    from runner.cli import main
    from runner.train.state import load_checkpoint

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: e\nseeds: [0]\ndevice: cpu\ndata: {dataset: digits, limit: 200}\n"
        "threat: {norm: linf, eps: 0.1}\nmodels: [{name: m, arch: mlp, kwargs: {hidden: [16]}}]\n"
        "recipes:\n  - {name: r, kind: pgd, epochs: 2, steps: 2, step_size: eps/2,"
        " ema: {decay: 0.9}, monitor: {n: 32, steps: 2}}\n"
        "attacks: [{name: pgd5, kind: pgd, steps: 5}]\neval: {n: 40, bootstrap: 20, checklist: false}\n"
    )
    assert main(["run", str(spec), "-o", str(tmp_path / "out"), "-q"]) == 0
    (d,) = (tmp_path / "out" / "runs").iterdir()
    state = load_checkpoint(d / "checkpoints" / "state.pt", CPU)
    average = {k.removeprefix("module."): v for k, v in state["ema"]["average"].items()}
    for name in ("last.pt", "best.pt"):  # best is epoch 1 or 2: both averages, never the trained
        shown = load_checkpoint(d / "checkpoints" / name, CPU)
        assert not all(torch.equal(shown[k], state["model"][k]) for k in shown), name
    last = load_checkpoint(d / "checkpoints" / "last.pt", CPU)
    assert all(torch.equal(last[k], average[k]) for k in last)
    card = json.loads((d / "model_card.json").read_text())
    assert "exponential moving average" in card["recipe"]["weights"]
    assert card["recipe"]["hyperparameters"]["ema"]["decay"] == 0.9
    import pandas as pd

    results = pd.read_csv(tmp_path / "out" / "results.csv")  # a sweep of ema.decay shows here
    assert (results.hp_ema_decay == 0.9).all() and (results.hp_ema_buffers == "copy").all()
