"""torchvision's ResNet-18 and ResNet-50, adapted to the data: first conv for C input channels,
final layer for the class count and, for small images, the CIFAR stem (He et al. 2016, section
4.2): a 3x3 stride-1 first conv and no max-pool, so a 32x32 image is not cut to 8x8 before the
first block. ``stem: imagenet`` keeps torchvision's 7x7 stride-2 conv and max-pool.

Needs torchvision (``pip install 'advrun[vision]'``, built for the installed torch). Weights are
never downloaded: pass a ``state_dict`` to ``advrun eval --checkpoint`` (the module names are
torchvision's, so its checkpoints load), or build any other torchvision/timm model with a user
factory and ``--allow-import``.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from runner.errors import AdvrunError
from runner.models import check_io

SMALL = 64  # inputs below this side get the CIFAR stem under stem: auto


def _torchvision_models() -> Any:
    try:
        import torchvision.models as models
    except Exception as e:  # ImportError, or a torchvision built for another torch
        raise AdvrunError(
            "architectures resnet18/resnet50 need torchvision, which "
            + (
                "is not installed"
                if isinstance(e, ModuleNotFoundError)
                else f"failed to import ({e})"
            )
            + ": pip install 'advrun[vision]' (a torchvision built for your torch version), or "
            "use wide_resnet / preact_resnet18, which need nothing more"
        ) from None
    return models


def _build(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    stem: Literal["auto", "cifar", "imagenet"],
) -> nn.Module:
    c, h, w = check_io(name, input_shape, num_classes)
    if stem not in ("auto", "cifar", "imagenet"):
        raise AdvrunError(f"{name}: stem must be auto, cifar or imagenet, got {stem!r}")
    model = getattr(_torchvision_models(), name)(weights=None, num_classes=num_classes)
    if stem == "cifar" or (stem == "auto" and min(h, w) < SMALL):
        model.conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif c != 3:
        model.conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def resnet18(
    input_shape: tuple[int, int, int],
    num_classes: int,
    stem: Literal["auto", "cifar", "imagenet"] = "auto",
) -> nn.Module:
    """ResNet-18 (11.17 M parameters with the CIFAR stem and 10 classes)."""
    return _build("resnet18", input_shape, num_classes, stem)


def resnet50(
    input_shape: tuple[int, int, int],
    num_classes: int,
    stem: Literal["auto", "cifar", "imagenet"] = "auto",
) -> nn.Module:
    """ResNet-50 (23.52 M parameters with the CIFAR stem and 10 classes)."""
    return _build("resnet50", input_shape, num_classes, stem)


# the pip extra these architectures need, and the module it provides (read by the tests and docs)
resnet18.extra = resnet50.extra = ("vision", "torchvision")  # type: ignore[attr-defined]
