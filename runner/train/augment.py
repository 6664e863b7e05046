"""Training augmentation (``data.augment``) on batches of tensors, on the run's device.

Each transform acts on a whole (B, C, H, W) batch at once (no PIL, no per-example loop) and
draws its randomness from the generator the training loop builds for the epoch, seeded by the
run's seed and the epoch; so an epoch replays bit for bit after a resume. The loop applies
:class:`Augment` to each training batch before the recipe's loss (and its attack); validation,
test, the checklist and evaluation attacks never see it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from runner.errors import AdvrunError


def random_crop(x: Tensor, padding: int, mode: str, fill: float, gen: torch.Generator) -> Tensor:
    """Pad each side by ``padding`` (zero: ``fill``; reflect: mirrored border) and crop back to
    (H, W) at an offset drawn per image, uniform in [0, 2 * padding] on each axis."""
    b, c, h, w = x.shape
    if mode == "reflect":
        padded = F.pad(x, (padding,) * 4, mode="reflect")
    else:
        padded = F.pad(x, (padding,) * 4, mode="constant", value=fill)
    dev = gen.device
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=dev).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=dev).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def horizontal_flip(x: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = torch.rand(len(x), generator=gen, device=gen.device).to(x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class Augment:
    """The spec's list of transforms as one callable ``(batch, generator) -> batch``."""

    def __init__(
        self,
        steps: Sequence[Any],
        pixel_range: Sequence[float],
        input_shape: Sequence[int] | None = None,
    ) -> None:
        self.steps = [_as_dict(s) for s in steps]
        self.fill = float(pixel_range[0])  # "zero" padding is black, the low end of the range
        if input_shape is not None:
            check(self.steps, input_shape)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        for step in self.steps:
            name, opts = next(iter(step.items()))
            if name == "random_crop":
                x = random_crop(x, int(opts["padding"]), opts.get("mode", "zero"), self.fill, gen)
            elif name == "horizontal_flip":
                x = horizontal_flip(x, float(opts.get("p", 0.5)), gen)
            else:  # the spec only admits the names above
                raise AdvrunError(f"unknown augmentation '{name}'")
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def check(steps: Sequence[Mapping[str, Any]], input_shape: Sequence[int]) -> None:
    """Refuse transforms that cannot fit images of ``input_shape`` (data sets whose shape the
    spec does not fix, e.g. npz, are checked here, before training starts)."""
    _, h, w = (int(v) for v in input_shape)
    for i, step in enumerate(steps):
        opts = step.get("random_crop")
        if opts is not None and int(opts["padding"]) >= min(h, w):
            raise AdvrunError(
                f"data.augment.{i}.random_crop.padding {opts['padding']} is not smaller than "
                f"the {h}x{w} images; use at most {min(h, w) - 1}"
            )


def _as_dict(step: Any) -> dict[str, Any]:
    """{name: options} from a spec object or its dump, without the unset transforms."""
    d = step.model_dump() if hasattr(step, "model_dump") else dict(step)
    named = {k: dict(v or {}) for k, v in d.items() if v is not None}
    if len(named) != 1:
        raise AdvrunError(f"an augment item names exactly one transform, got {sorted(named)}")
    return named
