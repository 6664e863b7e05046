"""models[].normalize: the wrapped model takes pixels, normalises inside, keeps the inner model's
state_dict keys; attacks on it stay in pixel units and agree with ART's preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from noise import assert_same_accuracy
from resolved import attack
from torch import nn

from runner.attacks import native
from runner.attacks.runner import generate
from runner.catalog.normalize import NORMALIZATIONS
from runner.errors import AdvrunError
from runner.models import build_for_spec, build_model
from runner.models.normalize import Normalized

MEAN, STD = (list(v) for v in NORMALIZATIONS["cifar10"][:2])
SPEC = {"name": "m", "arch": "small_cnn", "kwargs": {"width": 0.25},
        "normalize": {"mean": MEAN, "std": STD, "preset": "cifar10"}}  # fmt: skip


def test_forward_is_the_inner_model_on_normalised_pixels() -> None:
    torch.manual_seed(0)
    model = build_for_spec(SPEC, (3, 16, 16), 4)
    assert isinstance(model, Normalized) and "cifar10" in repr(model)
    x = torch.rand(5, 3, 16, 16)
    expected = model.inner(
        (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    )
    assert torch.equal(model(x), expected)  # the very numbers torchvision's Normalize gives
    # pixel_range [0, 255]: the statistics are of [0, 1] pixels, so the wrapper rescales first
    wide = build_for_spec(SPEC, (3, 16, 16), 4, pixel_range=(0, 255))
    wide.load_state_dict(model.state_dict())
    torch.testing.assert_close(wide(x * 255), model(x))


def test_state_dict_keys_are_the_inner_models() -> None:
    torch.manual_seed(0)
    wrapped = build_for_spec(SPEC, (3, 16, 16), 4)
    bare = build_model("small_cnn", (3, 16, 16), 4, {"width": 0.25})
    assert list(wrapped.state_dict()) == list(bare.state_dict())
    bare.load_state_dict(wrapped.state_dict())  # advrun's checkpoint into the bare architecture
    third_party = build_model("small_cnn", (3, 16, 16), 4, {"width": 0.25})
    wrapped.load_state_dict(third_party.state_dict())  # a checkpoint trained elsewhere
    assert all(
        torch.equal(a, b)
        for a, b in zip(wrapped.inner.parameters(), third_party.parameters(), strict=True)
    )
    with pytest.raises(RuntimeError, match="Missing key"):
        wrapped.load_state_dict(
            {"features.0.weight": third_party.state_dict()["features.0.weight"]}
        )


def test_channel_mismatch_is_refused() -> None:
    with pytest.raises(AdvrunError, match="'cifar10' normalisation has 3 channel.*images have 1"):
        build_for_spec(SPEC, (1, 16, 16), 4)
    one = {**SPEC, "normalize": {"mean": [0.5], "std": [0.25]}}  # one value for all channels
    assert build_for_spec(one, (3, 16, 16), 4)(torch.rand(2, 3, 16, 16)).shape == (2, 4)


def _trained_normalising_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small normalising CNN trained on 4 classes of noisy colour patterns, 3x16x16, whose
    signal PGD at 8/255 partly but not wholly destroys (so robust accuracy is informative)."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(4, 3, 16, 16, generator=g).sign()
    y = torch.arange(1600) % 4
    x = (0.5 + 0.2 * patterns[y] + 0.35 * torch.randn(1600, 3, 16, 16, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = build_for_spec(SPEC, (3, 16, 16), 4)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(3):
        perm = torch.randperm(1200, generator=g)
        for i in range(0, 1200, 100):
            idx = perm[i : i + 100]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), x[1200:], y[1200:]


def test_pgd_on_a_normalising_model_is_in_pixel_units_and_matches_art() -> None:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    model, x, y = _trained_normalising_model()
    eps, step, steps = 8 / 255, 2 / 255, 10

    def correct(inputs: torch.Tensor):
        with torch.no_grad():
            return (model(inputs).argmax(1) == y).numpy()

    def accuracy(inputs: torch.Tensor) -> float:
        return float(correct(inputs).mean())

    clean = accuracy(x)
    ours = native.pgd(model, x, y, eps, step, steps, "linf", 0.0, 1.0, rand_init=False)
    # ART's reference: its PyTorchClassifier on the *inner* model with preprocessing=(mean, std)
    classifier = PyTorchClassifier(
        model=model.inner,
        loss=nn.CrossEntropyLoss(),
        input_shape=(3, 16, 16),
        nb_classes=4,
        clip_values=(0.0, 1.0),
        preprocessing=(np.array(MEAN).reshape(3, 1, 1), np.array(STD).reshape(3, 1, 1)),
        device_type="cpu",
    )
    art_pgd = ProjectedGradientDescent(
        classifier, norm=np.inf, eps=eps, eps_step=step, max_iter=steps, num_random_init=0,
        batch_size=400, verbose=False,
    )  # fmt: skip
    theirs = torch.as_tensor(art_pgd.generate(x.numpy(), y=y.numpy()))
    # advrun's own ART engine on the wrapped model (its classifier has no preprocessing)
    cfg = attack("pgd", engine="art", eps=eps, norm="linf", step_size=step, steps=steps,
                 random_start=False, batch_size=400)  # fmt: skip
    via_runner = generate(model, x, y, cfg, (0.0, 1.0), 4)
    for adv in (ours, theirs, via_runner):
        assert (adv - x).abs().max().item() <= eps + 1e-6  # pixels moved by at most 8/255
        assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    robust = [accuracy(a) for a in (ours, theirs, via_runner)]
    print(f"clean {clean:.4f}  robust native {robust[0]:.4f}  ART(preprocessing) {robust[1]:.4f}"
          f"  advrun-ART {robust[2]:.4f}")  # fmt: skip
    # the attack bites, but not wholly: measured clean 0.998, robust 0.540 on 400 examples (SE
    # at most 0.025): 17 SE above 0.1 and 14 SE below clean - 0.1; clean 10 SE above 0.8
    assert clean > 0.8 and 0.1 < robust[0] < clean - 0.1
    # three deterministic runs of one algorithm (no random start) on one model: no chance
    # involved, only float rounding flipping an example at the boundary (measured: 0 discordant
    # examples of 400, paired SE 0); 1 point (4 examples), or else a gap McNemar calls chance
    ok = [correct(a) for a in (ours, theirs, via_runner)]
    assert_same_accuracy(ok[0], ok[1], 0.01, what="native vs ART(preprocessing)")
    assert_same_accuracy(ok[2], ok[1], 0.01, what="advrun-ART vs ART(preprocessing)")
    # the same budget read in normalised units (the classic mistake) is ~4x smaller in pixels
    # (eps x std), so that attack is much weaker
    wrong = native.pgd(model.inner, (x - model.mean_t) / model.std_t, y, eps, step, steps,
                       "linf", -10.0, 10.0, rand_init=False)  # fmt: skip
    with torch.no_grad():
        wrong_acc = (model.inner(wrong).argmax(1) == y).float().mean().item()
    # measured 0.97 vs 0.54: 172 of 400 examples apart against 20 required, no chance call
    assert wrong_acc > robust[0] + 0.05
