"""Registered data sets and model architectures (pure; imports no torch).

Data set meta: ``needs`` the DataSpec field that must be set; ``shape`` the (C, H, W) of every
image when the format fixes it (validation checks augmentations and normalisations against it);
``flip: False`` where a horizontal flip changes what an image shows (digits, characters, house
numbers), so ``horizontal_flip`` is refused. Model meta: ``extra`` the pip extra an architecture
needs (with the module it imports).
"""

from __future__ import annotations

from runner.registry import Registry

DATASETS = Registry("dataset")
_RGB32 = (3, 32, 32)
_GRAY28 = (1, 28, 28)
DATASETS.register(
    "digits", "runner.data.digits:load", "scikit-learn's bundled 8x8 digits (embedded)",
    shape=(1, 8, 8), flip=False,
)  # fmt: skip
DATASETS.register(
    "npz", "runner.data.npz:load", "a user .npz file with arrays x and y", needs="path"
)
DATASETS.register(
    "mnist", "runner.data.idx:load_mnist", "MNIST from IDX files under root",
    needs="root", shape=_GRAY28, flip=False,
)  # fmt: skip
DATASETS.register(
    "fashion_mnist", "runner.data.idx:load_fashion_mnist", "Fashion-MNIST IDX files",
    needs="root", shape=_GRAY28,
)  # fmt: skip
DATASETS.register(
    "kmnist", "runner.data.idx:load_kmnist", "Kuzushiji-MNIST IDX files",
    needs="root", shape=_GRAY28, flip=False,
)  # fmt: skip
DATASETS.register(
    "cifar10", "runner.data.cifar:load_cifar10",
    "CIFAR-10, python (cifar-10-batches-py) or binary (cifar-10-batches-bin) version under root",
    needs="root", shape=_RGB32,
)  # fmt: skip
DATASETS.register(
    "cifar100", "runner.data.cifar:load_cifar100",
    "CIFAR-100, python (cifar-100-python) or binary (cifar-100-binary) version under root; "
    "fine or coarse labels",
    needs="root", shape=_RGB32,
)  # fmt: skip
DATASETS.register(
    "svhn", "runner.data.svhn:load", "SVHN cropped digits (train_32x32.mat, test_32x32.mat)",
    needs="root", shape=_RGB32, flip=False,
)  # fmt: skip
DATASETS.register(
    "image_folder", "runner.data.image_folder:load",
    "PNG/JPEG images in root/<class>/ (or root/train/<class>/ and root/test/<class>/)",
    needs="root",
)  # fmt: skip

MODELS = Registry("model architecture")
MODELS.register("mlp", "runner.models.mlp:MLP", "multi-layer perceptron")
MODELS.register(
    "small_cnn", "runner.models.small_cnn:SmallCNN", "Madry et al. MNIST CNN, sized to the input"
)
MODELS.register(
    "preact_resnet18",
    "runner.models.preact_resnet:PreActResNet18",
    "PreAct ResNet-18 (He et al. 2016)",
)
MODELS.register(
    "wide_resnet",
    "runner.models.wide_resnet:WideResNet",
    "WideResNet (Zagoruyko & Komodakis 2016) as in TRADES/MART/RobustBench: depth, widen_factor",
)
MODELS.register(
    "resnet18",
    "runner.models.torchvision_resnet:resnet18",
    "torchvision's ResNet-18; a 3x3 stem without max-pool for small (CIFAR-size) inputs",
    extra=("vision", "torchvision"),
)
MODELS.register(
    "resnet50",
    "runner.models.torchvision_resnet:resnet50",
    "torchvision's ResNet-50; a 3x3 stem without max-pool for small (CIFAR-size) inputs",
    extra=("vision", "torchvision"),
)
