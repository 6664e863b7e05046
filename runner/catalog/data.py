"""Registered data sets and model architectures (pure; imports no torch)."""

from __future__ import annotations

from runner.registry import Registry

DATASETS = Registry("dataset")
# meta: needs = the DataSpec field that must be set
DATASETS.register(
    "digits", "runner.data.digits:load", "scikit-learn's bundled 8x8 digits (embedded)"
)
DATASETS.register(
    "npz", "runner.data.npz:load", "a user .npz file with arrays x and y", needs="path"
)
DATASETS.register(
    "mnist", "runner.data.idx:load_mnist", "MNIST from IDX files under root", needs="root"
)
DATASETS.register(
    "fashion_mnist", "runner.data.idx:load_fashion_mnist", "Fashion-MNIST IDX files", needs="root"
)
DATASETS.register(
    "kmnist", "runner.data.idx:load_kmnist", "Kuzushiji-MNIST IDX files", needs="root"
)
DATASETS.register(
    "cifar10", "runner.data.cifar:load_cifar10", "CIFAR-10 binary version under root", needs="root"
)

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
