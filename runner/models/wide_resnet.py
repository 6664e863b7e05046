"""WideResNet (Zagoruyko & Komodakis 2016) in the form TRADES, MART and RobustBench use.

WRN-depth-k: a 3x3 stem with 16 channels, then three groups of (depth - 4) / 6 pre-activation
basic blocks with 16k, 32k and 64k channels (strides 1, 2, 2), then BN-ReLU, global average
pooling and a linear layer. Module names (``block1.layer.0.conv1``, ``convShortcut``, ``bn1``,
``fc``) follow that code, so their published ``state_dict`` checkpoints load with ``advrun eval
--checkpoint``; TRADES' release also holds an unused ``sub_block1`` (``sub_block1: true``).

The one change: adaptive average pooling instead of a fixed 8x8 pool (identical on 32x32 inputs),
so the network also runs on smaller or larger images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import AdvrunError
from runner.models import check_io


class BasicBlock(nn.Module):
    """BN -> ReLU -> conv3x3 -> BN -> ReLU -> (dropout) -> conv3x3, plus the shortcut; when the
    width changes the shortcut is a 1x1 conv of the pre-activated input, as in the reference."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.droprate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (  # noqa: N815 - the reference's name, kept for its checkpoints
            None
            if self.equal_in_out
            else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        return out + (x if self.equal_in_out else self.convShortcut(act))


class NetworkBlock(nn.Module):
    """``n`` basic blocks; the first changes width and stride."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                BasicBlock(in_planes if i == 0 else out_planes, out_planes,
                           stride if i == 0 else 1, drop)
                for i in range(n)
            )
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``; WRN-34-10 (46.2 M parameters) and WRN-28-10 (36.5 M)
    are the common robust-training choices."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        depth: int = 34,
        widen_factor: int = 10,
        dropout: float = 0.0,
        sub_block1: bool = False,
    ) -> None:
        super().__init__()
        c, _, _ = check_io("wide_resnet", input_shape, num_classes)
        for key, v in (("depth", depth), ("widen_factor", widen_factor)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise AdvrunError(f"wide_resnet: {key} must be a positive integer, got {v!r}")
        if (depth - 4) % 6 or depth < 10:
            raise AdvrunError(
                f"wide_resnet: depth {depth} must be 6n + 4 with n >= 1 (e.g. 16, 28, 34, 40)"
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not (0 <= dropout < 1)
        ):
            raise AdvrunError(f"wide_resnet: dropout must be in [0, 1), got {dropout!r}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(c, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, float(dropout))
        if sub_block1:  # in TRADES' checkpoints, never used by forward
            self.sub_block1 = NetworkBlock(n, widths[0], widths[1], 1, float(dropout))
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, float(dropout))
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, float(dropout))
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # the reference initialisation (He normal, fan-out)
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
