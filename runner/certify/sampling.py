"""Class counts of a model's predictions on noisy copies of several examples, on the device.

Many noise samples of several examples go through one forward pass (a [k examples x m samples]
batch, flattened); the predictions are counted per example with one ``index_add_`` and stay on
the device until the phase ends (one transfer per phase, not per batch).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from runner.certify import noise


@torch.inference_mode()
def class_counts(
    model: nn.Module,
    x: Tensor,
    examples: list[int],
    samples: int,
    num_classes: int,
    sigma: float,
    phase: str,
    seed: int,
    batch_size: int,
) -> Tensor:
    """[len(x), num_classes] int64 counts of ``argmax f(x_i + e)`` over ``samples`` noise draws
    e ~ N(0, sigma^2 I) per example; ``examples`` are the test indices that key each example's
    noise streams. The noisy inputs are not clipped to the pixel range (as in the paper)."""
    counts = torch.zeros(len(x) * num_classes, dtype=torch.int64, device=x.device)
    if samples <= 0 or len(x) == 0:
        return counts.view(len(x), num_classes)
    dim = int(x[0].numel())
    gen = torch.Generator(device=x.device)
    for batch in noise.batches(noise.units(examples, samples, dim), batch_size):
        rows, owner = noise.draw(batch, x, seed, sigma, phase, gen)
        pred = model(rows).argmax(1)
        counts.index_add_(0, owner * num_classes + pred, torch.ones_like(pred))
    return counts.view(len(x), num_classes)
