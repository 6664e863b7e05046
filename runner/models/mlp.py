"""Multi-layer perceptron on flattened inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from runner.errors import AdvrunError
from runner.models import check_io


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] per hidden width -> Linear to logits."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
    ) -> None:
        super().__init__()
        c, h, w = check_io("mlp", input_shape, num_classes)
        if isinstance(hidden, (str, bytes)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in hidden
        ):
            raise AdvrunError(f"mlp: hidden must be a list of positive integers, got {hidden!r}")
        layers: list[nn.Module] = []
        width = c * h * w
        for n in hidden:
            layers += [nn.Linear(width, n), nn.ReLU()]
            width = n
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))
