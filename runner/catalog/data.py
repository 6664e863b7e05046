"""Registered data sets and model architectures: one line each, naming its class as "module:attr"
(pure; imports nothing).

A data set class (:class:`runner.data.source.DataSource`) holds what validation needs (the field
it needs, the image shape its format fixes, whether a horizontal flip is allowed) and its loader.
A model architecture is an ``nn.Module`` class or a factory called as
``f(input_shape=(C, H, W), num_classes=K, **kwargs)``; an ``extra`` attribute names the pip extra
it needs (with the module it imports). Models are loaded only when a run builds one.
"""

from __future__ import annotations

from runner.registry import Registry

DATASETS = Registry("dataset")
# fmt: off
DATASETS.register("digits", "runner.data.digits:Digits", "scikit-learn's bundled 8x8 digits (embedded)")
DATASETS.register("npz", "runner.data.npz:Npz", "a user .npz file with arrays x and y")
DATASETS.register("mnist", "runner.data.idx:MNIST", "MNIST from IDX files under root")
DATASETS.register("fashion_mnist", "runner.data.idx:FashionMNIST", "Fashion-MNIST IDX files")
DATASETS.register("kmnist", "runner.data.idx:KMNIST", "Kuzushiji-MNIST IDX files")
DATASETS.register(
    "cifar10", "runner.data.cifar:CIFAR10",
    "CIFAR-10, python (cifar-10-batches-py) or binary (cifar-10-batches-bin) version under root",
)
DATASETS.register(
    "cifar100", "runner.data.cifar:CIFAR100",
    "CIFAR-100, python (cifar-100-python) or binary (cifar-100-binary) version under root; "
    "fine or coarse labels",
)
DATASETS.register("svhn", "runner.data.svhn:SVHN", "SVHN cropped digits (train_32x32.mat, test_32x32.mat)")
DATASETS.register(
    "image_folder", "runner.data.image_folder:ImageFolder",
    "PNG/JPEG images in root/<class>/ (or root/train/<class>/ and root/test/<class>/)",
)

MODELS = Registry("model architecture")
MODELS.register("mlp", "runner.models.mlp:MLP", "multi-layer perceptron")
MODELS.register("small_cnn", "runner.models.small_cnn:SmallCNN", "Madry et al. MNIST CNN, sized to the input")
MODELS.register("preact_resnet18", "runner.models.preact_resnet:PreActResNet18", "PreAct ResNet-18 (He et al. 2016)")
MODELS.register(
    "wide_resnet", "runner.models.wide_resnet:WideResNet",
    "WideResNet (Zagoruyko & Komodakis 2016) as in TRADES/MART/RobustBench: depth, widen_factor",
)
MODELS.register(
    "resnet18", "runner.models.torchvision_resnet:resnet18",
    "torchvision's ResNet-18; a 3x3 stem without max-pool for small (CIFAR-size) inputs",
)
MODELS.register(
    "resnet50", "runner.models.torchvision_resnet:resnet50",
    "torchvision's ResNet-50; a 3x3 stem without max-pool for small (CIFAR-size) inputs",
)
# fmt: on
