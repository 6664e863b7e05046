"""The MNIST CNN of Madry et al. (2018), sized to the input."""

from __future__ import annotations

import torch
from torch import nn

from runner.errors import AdvrunError
from runner.models import check_io


class SmallCNN(nn.Module):
    """conv5x5(32) -> ReLU -> maxpool2 -> conv5x5(64) -> ReLU -> maxpool2 -> fc1024 -> ReLU -> fc.

    ``width`` scales both conv channel counts (the fc layer stays 1024 wide). Padding 2 keeps the
    spatial size through each conv, so the flattened size is 64 * (H // 4) * (W // 4) at width 1.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0
    ) -> None:
        super().__init__()
        c, h, w = check_io("small_cnn", input_shape, num_classes)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
            raise AdvrunError(f"small_cnn: width must be a positive number, got {width!r}")
        if h < 4 or w < 4:
            raise AdvrunError(
                f"small_cnn: input {input_shape} is too small for two 2x2 max-pools; "
                "it needs H and W of at least 4"
            )
        c1, c2 = max(1, round(32 * width)), max(1, round(64 * width))
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * (h // 4) * (w // 4), 1024),
            nn.ReLU(),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
