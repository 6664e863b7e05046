"""Built-in models on every supported input size, and the user-factory import gate."""

from __future__ import annotations

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


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", MODELS.names())
def test_builtin_logits_and_input_gradients(arch: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(arch, shape, 7, {}, [])
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
        ("resnet18", {}, "unknown model architecture 'resnet18'"),
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
