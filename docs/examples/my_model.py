"""A model plug-in in one file: a small convolutional network that average-pools its features to
4x4, so it builds for any image size (8x8 digits as well as 32x32 CIFAR images).

Register it with one line (in ``runner/catalog/data.py``, or at run time as the test does):

    MODELS.register("tiny_convnet", "my_model:TinyConvNet", "small convolutional network")

and use it in a spec: ``models: [{name: tiny, arch: tiny_convnet, kwargs: {width: 16}}]``.
"""

from __future__ import annotations

import torch
from torch import nn

from runner.errors import AdvrunError
from runner.models import check_io


class TinyConvNet(nn.Module):
    """conv3x3(w) -> ReLU -> conv3x3(2w, stride 2) -> ReLU -> average pool to 4x4 -> linear.

    advrun calls it as ``TinyConvNet(input_shape=(C, H, W), num_classes=K, **kwargs)``, the
    kwargs being the spec's ``models[].kwargs`` (checked against this signature).
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: int = 16):
        super().__init__()
        c, _, _ = check_io("tiny_convnet", input_shape, num_classes)  # a clear error, not a crash
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise AdvrunError(f"tiny_convnet: width must be a positive integer, got {width!r}")
        self.features = nn.Sequential(
            nn.Conv2d(c, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # 4x4 whatever the image size
        )
        self.head = nn.Linear(2 * width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))  # logits, shape (B, num_classes)
