"""Named input normalisations (``models[].normalize: cifar10``): per-channel mean and std of
pixels scaled to [0, 1], as ``torchvision.transforms.Normalize`` takes them after ``ToTensor``.

Pure data, no torch. Each entry names where its numbers come from, so a model trained elsewhere
with that normalisation can be audited by naming it.
"""

from __future__ import annotations

# name -> (mean, std, source)
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...], str]] = {
    "cifar10": (
        (0.4914, 0.4822, 0.4465),
        (0.2471, 0.2435, 0.2616),
        "CIFAR-10 train-set channel statistics, as in Wong et al. 2020 and Rice et al. 2020 "
        "(locuslab/fast_adversarial, locuslab/robust_overfitting)",
    ),
    "cifar100": (
        (0.5070751592371323, 0.48654887331495095, 0.4409178433670343),
        (0.2673342858792401, 0.2564384629170883, 0.27615047132568404),
        "CIFAR-100 train-set channel statistics, as in Rice et al. 2020's CIFAR-100 code",
    ),
    "svhn": (
        (0.4376821, 0.4437697, 0.47280442),
        (0.19803012, 0.20101562, 0.19703614),
        "SVHN train-set channel statistics (train_32x32.mat)",
    ),
    "imagenet": (
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        "ImageNet statistics used by torchvision's pretrained models",
    ),
    "inception": (
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        "maps [0, 1] to [-1, 1], as Inception-style and timm 'inception' models expect",
    ),
    "mnist": ((0.1307,), (0.3081,), "MNIST train-set statistics, as in the PyTorch MNIST example"),
}
