"""PreAct ResNet-18 (He et al. 2016), as in the code of Wong et al. 2020 and Rice et al. 2020.

The one change: global adaptive average pooling instead of a fixed 4x4 pool, so the network also
runs on inputs smaller or larger than 32x32 (8x8 digits end at 1x1 after layer4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import AdvrunError
from runner.models import check_io


class PreActBlock(nn.Module):
    """BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus the (projected) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # the projection sees the pre-activated input, as in the reference code
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18: 4 stages of 2 blocks, widths (1, 2, 4, 8) * ``width``."""

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, width: int = 64
    ) -> None:
        super().__init__()
        c, _, _ = check_io("preact_resnet18", input_shape, num_classes)
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise AdvrunError(f"preact_resnet18: width must be a positive integer, got {width!r}")
        self.in_planes = width
        self.conv1 = nn.Conv2d(c, width, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(width, 2, stride=1)
        self.layer2 = self._make_layer(2 * width, 2, stride=2)
        self.layer3 = self._make_layer(4 * width, 2, stride=2)
        self.layer4 = self._make_layer(8 * width, 2, stride=2)
        self.bn = nn.BatchNorm2d(8 * width)
        self.linear = nn.Linear(8 * width, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
