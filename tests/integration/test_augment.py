"""The on-device augmentations against a per-image reference, and their determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from runner.errors import AdvrunError
from runner.train.augment import Augment, horizontal_flip, random_crop


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_random_crop_is_a_window_of_the_padded_image(mode: str) -> None:
    x = torch.rand(64, 3, 8, 6)
    out = random_crop(x, 2, mode, 0.0, gen(1))
    assert out.shape == x.shape
    # the reference: the same offsets drawn in the same order, cropped one image at a time
    g = gen(1)
    dy = torch.randint(0, 5, (64,), generator=g)
    dx = torch.randint(0, 5, (64,), generator=g)
    padded = F.pad(x, (2,) * 4, mode="reflect" if mode == "reflect" else "constant")
    for i in range(64):
        window = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 6]
        assert torch.equal(out[i], window)
    assert len({(int(a), int(b)) for a, b in zip(dy, dx, strict=True)}) > 10  # offsets vary


def test_zero_padding_is_the_low_end_of_the_pixel_range() -> None:
    x = torch.full((16, 1, 4, 4), 0.5)
    out = random_crop(x, 3, "zero", -1.0, gen())
    assert set(out.unique().tolist()) <= {-1.0, 0.5} and (out == -1.0).any()


def test_horizontal_flip() -> None:
    x = torch.rand(400, 2, 3, 5)
    assert torch.equal(horizontal_flip(x, 0.0, gen()), x)
    assert torch.equal(horizontal_flip(x, 1.0, gen()), x.flip(-1))
    half = horizontal_flip(x, 0.5, gen())
    flipped = (half == x.flip(-1)).flatten(1).all(1)
    # a seeded draw (measured 201 of 400); any stream is binomial(400, 0.5), SD 10: 5 SD each way
    assert 150 < flipped.sum() < 250 and ((half == x).flatten(1).all(1) | flipped).all()


def test_augment_is_deterministic_per_generator_and_keeps_memory_format() -> None:
    steps = [{"random_crop": {"padding": 4, "mode": "reflect"}}, {"horizontal_flip": {"p": 0.5}}]
    aug = Augment(steps, (0.0, 1.0), (3, 32, 32))
    x = torch.rand(32, 3, 32, 32)
    assert torch.equal(aug(x, gen(7)), aug(x, gen(7)))
    assert not torch.equal(aug(x, gen(7)), aug(x, gen(8)))
    cl = x.contiguous(memory_format=torch.channels_last)
    assert aug(cl, gen(7)).is_contiguous(memory_format=torch.channels_last)
    assert not Augment([], (0.0, 1.0)) and Augment(steps, (0.0, 1.0))


def test_a_crop_larger_than_the_images_is_refused() -> None:
    with pytest.raises(AdvrunError, match="padding 8 is not smaller than the 8x8 images"):
        Augment([{"random_crop": {"padding": 8, "mode": "zero"}}], (0.0, 1.0), (1, 8, 8))
