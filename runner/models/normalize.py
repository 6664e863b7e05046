"""Input normalisation inside the model (``models[].normalize``).

:class:`Normalized` takes pixels in the threat model's ``pixel_range`` and feeds the wrapped
model ``((x - lo) / (hi - lo) - mean) / std``. Everything outside the model (eps, step sizes,
every attack, the threat-model check, exported adversarial examples) therefore stays in pixel
units, and the gradient an attack sees is the true gradient w.r.t. the pixels.

The statistics are of [0, 1] pixels, as ``torchvision.transforms.Normalize`` takes them after
``ToTensor``. The wrapper's ``state_dict`` is the inner model's, key for key (mean and std are not
persistent): a checkpoint trained elsewhere on normalised inputs loads into a normalising model,
and advrun's checkpoints of such a model load into the bare architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

_INNER = "inner."


class Normalized(nn.Module):
    """``inner(((x - lo) / (hi - lo) - mean) / std)`` with per-channel mean and std."""

    def __init__(
        self,
        inner: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        pixel_range: tuple[float, float] = (0.0, 1.0),
        preset: str | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        lo, hi = (float(v) for v in pixel_range)
        shape = (1, -1, 1, 1)
        self.register_buffer("mean_t", torch.tensor(list(mean)).view(shape), persistent=False)
        self.register_buffer("std_t", torch.tensor(list(std)).view(shape), persistent=False)
        self.mean, self.std, self.pixel_range, self.preset = list(mean), list(std), (lo, hi), preset
        self.register_state_dict_post_hook(_drop_prefix)
        self.register_load_state_dict_pre_hook(_add_prefix)

    def forward(self, x: Tensor) -> Tensor:
        lo, hi = self.pixel_range
        if (lo, hi) != (0.0, 1.0):
            x = (x - lo) / (hi - lo)
        # subtract, then divide, as torchvision's Normalize: a model trained behind it sees
        # the very same numbers here
        return self.inner((x - self.mean_t) / self.std_t)

    def extra_repr(self) -> str:
        name = f"{self.preset}: " if self.preset else ""
        return f"{name}mean={self.mean}, std={self.std}, pixel_range={list(self.pixel_range)}"


def _drop_prefix(module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    for key in [k for k in state if k.startswith(prefix + _INNER)]:
        state[prefix + key[len(prefix) + len(_INNER) :]] = state.pop(key)


def _add_prefix(module: nn.Module, state: dict[str, Any], prefix: str, *_args: Any) -> None:
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(prefix + _INNER)]:
        state[prefix + _INNER + key[len(prefix) :]] = state.pop(key)
