"""Built-in models on every supported input size, and the user-factory import gate."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from runner.catalog import MODELS
from runner.errors import AdvrunError
from runner.models import build_model, import_allowed

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
NO_TORCHVISION = "torchvision is not installed (it cannot be installed beside torch 2.13 here)"
# small variants for the generic tests; full-size parameter counts are checked below
SMALL = {"wide_resnet": {"depth": 10, "widen_factor": 1}, "preact_resnet18": {"width": 8}}


def arch_params(names):
    """Architectures as pytest params; torchvision's are skipped where it is missing."""
    return [
        pytest.param(
            a,
            marks=pytest.mark.skipif(not HAS_TORCHVISION, reason=NO_TORCHVISION)
            if getattr(MODELS.load(a), "extra", None)
            else (),
        )
        for a in names
    ]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", arch_params(MODELS.names()))
def test_builtin_logits_and_input_gradients(arch: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(arch, shape, 7, SMALL.get(arch, {}), [])
    assert isinstance(model, nn.Module) and not isinstance(model, nn.Sequential)
    x = torch.rand(3, *shape, requires_grad=True)
    logits = model(x)
    assert logits.shape == (3, 7)
    logits.sum().backward()  # attacks need d(logits)/d(input)
    assert x.grad is not None and x.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (3, 7)


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [("mlp", {"hidden": [16]}), ("small_cnn", {"width": 0.25}), ("preact_resnet18", {"width": 8})],
)
def test_builtin_kwargs_change_the_size(arch: str, kwargs: dict) -> None:
    def size(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    small = build_model(arch, (1, 28, 28), 10, kwargs, [])
    assert size(small) < size(build_model(arch, (1, 28, 28), 10, {}, []))
    assert small(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# Parameter counts of the reference implementations, 10 classes. 3x32x32: mlp and small_cnn by
# their layer arithmetic (Madry et al.'s MNIST CNN: 3,274,634 on 1x28x28); preact_resnet18 the
# PreActResNet18 of Wong/Rice et al.'s code; wide_resnet the WideResNet of TRADES/RobustBench
# (WRN-34-10, checked against that code: same keys, same outputs); resnet18/resnet50 torchvision's
# with the CIFAR stem (kuangliu/pytorch-cifar's ResNet18/ResNet50 have the same counts). 1x8x8:
# the same layers with a one-channel first conv (mlp and small_cnn are sized to the input).
REFERENCE_PARAMS = {
    # arch: (kwargs, params on 3x32x32, params on 1x8x8)
    "mlp": ({}, 3072 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10, 64 * 256 + 256 + 65792 + 2570),
    "small_cnn": (
        {},
        (3 * 25 * 32 + 32) + (32 * 25 * 64 + 64) + (64 * 8 * 8 * 1024 + 1024) + (1024 * 10 + 10),
        (1 * 25 * 32 + 32) + (32 * 25 * 64 + 64) + (64 * 2 * 2 * 1024 + 1024) + (1024 * 10 + 10),
    ),
    "preact_resnet18": ({}, 11_172_170, 11_172_170 - 64 * 9 * 2),
    "wide_resnet": ({"depth": 34, "widen_factor": 10}, 46_160_474, 46_160_474 - 16 * 9 * 2),
    "resnet18": ({}, 11_173_962, 11_173_962 - 64 * 9 * 2),
    "resnet50": ({}, 23_520_842, 23_520_842 - 64 * 9 * 2),
}


def test_every_builtin_architecture_has_a_reference_count() -> None:
    assert set(REFERENCE_PARAMS) == set(MODELS.names())


@pytest.mark.parametrize("arch", arch_params(REFERENCE_PARAMS))
def test_parameter_counts_on_cifar_and_digit_shapes(arch: str) -> None:
    kwargs, on_cifar, on_digits = REFERENCE_PARAMS[arch]
    torch.manual_seed(0)
    big = build_model(arch, (3, 32, 32), 10, kwargs, [])
    assert n_params(big) == on_cifar
    small = build_model(arch, (1, 8, 8), 10, kwargs, [])
    assert n_params(small) == on_digits
    small.eval()
    with torch.no_grad():
        assert small(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_wrn_28_10_and_trades_checkpoint_layout() -> None:
    assert n_params(build_model("wide_resnet", (3, 32, 32), 10, {"depth": 28})) == 36_479_194
    trades = build_model("wide_resnet", (3, 32, 32), 10, {"depth": 10, "sub_block1": True})
    keys = list(trades.state_dict())
    assert keys[:3] == ["conv1.weight", "block1.layer.0.bn1.weight", "block1.layer.0.bn1.bias"]
    assert (
        "sub_block1.layer.0.conv1.weight" in keys and "block2.layer.0.convShortcut.weight" in keys
    )
    assert keys[-2:] == ["fc.weight", "fc.bias"]


@pytest.mark.skipif(not HAS_TORCHVISION, reason=NO_TORCHVISION)
def test_torchvision_stems() -> None:
    cifar = build_model("resnet18", (3, 32, 32), 10)
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, nn.Identity)
    imagenet = build_model("resnet18", (3, 224, 224), 1000)
    assert (
        imagenet.conv1.kernel_size == (7, 7) and n_params(imagenet) == 11_689_512
    )  # torchvision's
    forced = build_model("resnet50", (3, 32, 32), 10, {"stem": "imagenet"})
    assert forced.conv1.stride == (2, 2)
    with pytest.raises(AdvrunError, match="stem must be auto, cifar or imagenet"):
        build_model("resnet18", (3, 32, 32), 10, {"stem": "tiny"})


def test_torchvision_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now fails
    monkeypatch.delitem(sys.modules, "torchvision.models", raising=False)
    with pytest.raises(AdvrunError, match=r"need torchvision.*pip install 'advrun\[vision\]'"):
        build_model("resnet18", (3, 32, 32), 10)


def test_known_layer_sizes() -> None:
    # Madry et al.'s MNIST CNN has 3,274,634 parameters; PreAct ResNet-18 on CIFAR about 11.17M
    cnn = build_model("small_cnn", (1, 28, 28), 10)
    assert sum(p.numel() for p in cnn.parameters()) == 3_274_634
    resnet = build_model("preact_resnet18", [3, 32, 32], 10)
    assert sum(p.numel() for p in resnet.parameters()) == 11_172_170


@pytest.mark.parametrize(
    ("arch", "kwargs", "message"),
    [
        (
            "mlp",
            {"hiden": [3]},
            r"does not take 'hiden' \(did you mean 'hidden'\?\); it accepts: hidden",
        ),
        ("small_cnn", {"depth": 3}, "it accepts: width"),
        ("mlp", {"hidden": "256"}, "positive integers"),
        ("small_cnn", {"width": -1}, "positive number"),
        ("preact_resnet18", {"width": 1.5}, "positive integer"),
        ("resnet19", {}, "unknown model architecture 'resnet19'"),
        ("wide_resnet", {"depth": 30}, "6n \\+ 4"),
        ("wide_resnet", {"widen_factor": 0}, "positive integer"),
        ("wide_resnet", {"dropout": 1.0}, r"\[0, 1\)"),
    ],
)
def test_builtin_bad_arguments(arch: str, kwargs: dict, message: str) -> None:
    with pytest.raises(AdvrunError, match=message):
        build_model(arch, (1, 28, 28), 10, kwargs, [])


@pytest.mark.parametrize(
    ("shape", "classes", "message"),
    [
        ((28, 28), 10, "input_shape"),
        ((1, 0, 28), 10, "input_shape"),
        ((1, 28, 28), 1, "num_classes"),
    ],
)
def test_bad_shapes(shape: tuple, classes: int, message: str) -> None:
    with pytest.raises(AdvrunError, match=message):
        build_model("mlp", shape, classes, {}, [])


def test_small_cnn_rejects_tiny_inputs() -> None:
    with pytest.raises(AdvrunError, match="too small"):
        build_model("small_cnn", (1, 3, 3), 10, {}, [])


# ------------------------------------------------------------------------------- user factory

FACTORY = """
    import torch
    from torch import nn

    class Linear(nn.Module):
        def __init__(self, input_shape, num_classes, scale=1.0):
            super().__init__()
            c, h, w = input_shape
            self.fc = nn.Linear(c * h * w, num_classes)
            self.scale = scale

        def forward(self, x):
            return self.scale * self.fc(x.flatten(1))

    def make(input_shape, num_classes, scale=1.0):
        return Linear(input_shape, num_classes, scale)

    def not_a_model(input_shape, num_classes):
        return "model"

    def broken(input_shape, num_classes):
        raise RuntimeError("boom")

    NOT_CALLABLE = 3
"""


@pytest.fixture
def user_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package ``advrun_testpkg`` with a module ``models`` importable from tmp_path."""
    pkg = tmp_path / "advrun_testpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("advrun_testpkg", "advrun_testpkg.models"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return "advrun_testpkg.models"


@pytest.mark.parametrize("patterns", [[], ["other.*"], ["advrun_testpkg"], ["advrun_test*.x"]])
def test_user_factory_needs_a_matching_pattern(user_pkg: str, patterns: list[str]) -> None:
    with pytest.raises(AdvrunError, match=r"--allow-import advrun_testpkg\.\*"):
        build_model(f"{user_pkg}:make", (1, 8, 8), 10, {}, patterns)
    assert user_pkg not in sys.modules  # refused before anything was imported


@pytest.mark.parametrize("patterns", [["advrun_testpkg.*"], ["x.*", "advrun_testpkg.models"]])
def test_user_factory_allowed(user_pkg: str, patterns: list[str]) -> None:
    model = build_model(f"{user_pkg}:make", (1, 8, 8), 10, {"scale": 2.0}, patterns)
    assert isinstance(model, nn.Module) and model.scale == 2.0
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    model(x).sum().backward()
    assert model(x).shape == (4, 10) and x.grad is not None


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("not_a_model", "returned str, not a torch.nn.Module"),
        ("broken", "failed: RuntimeError: boom"),
        ("NOT_CALLABLE", "no callable 'NOT_CALLABLE'"),
        ("missing", "no callable 'missing'"),
    ],
)
def test_user_factory_errors(user_pkg: str, target: str, message: str) -> None:
    with pytest.raises(AdvrunError, match=message):
        build_model(f"{user_pkg}:{target}", (1, 8, 8), 10, {}, ["advrun_testpkg.*"])


def test_user_factory_bad_module_and_kwargs(user_pkg: str) -> None:
    with pytest.raises(AdvrunError, match="cannot import module 'advrun_testpkg.nope'"):
        build_model("advrun_testpkg.nope:make", (1, 8, 8), 10, {}, ["advrun_testpkg.*"])
    with pytest.raises(AdvrunError, match="TypeError"):
        build_model(f"{user_pkg}:make", (1, 8, 8), 10, {"bogus": 1}, ["advrun_testpkg.*"])
    with pytest.raises(AdvrunError, match="package.module:factory"):
        build_model(":make", (1, 8, 8), 10, {}, ["*"])


def test_import_allowed() -> None:
    assert import_allowed("pkg.models", ["pkg.*"])
    assert import_allowed("pkg", ["pkg.*"])  # the package itself, for "pkg:factory"
    assert not import_allowed("pkgx.models", ["pkg.*"])
    assert not import_allowed("pkg.models", [])


TV_FACTORY = """
    import torchvision

    def mobilenet(input_shape, num_classes, width_mult=1.0):
        # torchvision's builders take num_classes but not input_shape: a two-line factory adapts them
        return torchvision.models.mobilenet_v3_small(num_classes=num_classes, width_mult=width_mult)
"""


@pytest.mark.skipif(not HAS_TORCHVISION, reason=NO_TORCHVISION)
def test_any_torchvision_model_through_a_user_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.models import build_for_spec
    from runner.models.normalize import Normalized

    (tmp_path / "tv_factory.py").write_text(textwrap.dedent(TV_FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"name": "m", "arch": "tv_factory:mobilenet", "kwargs": {"width_mult": 0.5},
            "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}  # fmt: skip
    with pytest.raises(AdvrunError, match="--allow-import"):
        build_for_spec(spec, (3, 32, 32), 10)
    model = build_for_spec(spec, (3, 32, 32), 10, allow_import=["tv_factory"])
    assert isinstance(model, Normalized) and model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
