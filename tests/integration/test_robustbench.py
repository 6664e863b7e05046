"""``arch: robustbench:<name>``: RobustBench's zoo architecture, weights from a local file only.

The real ``robustbench`` package does not import beside this machine's CPU build of torch (see
:func:`test_real_robustbench`, skipped with the exact reason), so the loading path is tested with
a fake zoo registered in ``sys.modules`` that has robustbench's shape: ``robustbench.model_zoo.
model_dicts[BenchmarkDataset][ThreatModel][name] = {'model': constructor, 'gdrive_id': ...}`` and
``robustbench.utils.download_gdrive_new``. Its model normalises its input inside ``forward`` with
``mu``/``sigma`` buffers, as RobustBench's CIFAR models do, and its file is saved the way
Carmon2019Unlabeled's is (``{'state_dict': {'module.' + key: ...}}``, no normalisation buffers)
in RobustBench's layout ``models/cifar10/Linf/<name>.pt``. The data are digits upsampled to
3x32x32 (the shape of RobustBench's CIFAR-10 models) in an npz file.
"""

from __future__ import annotations

import enum
import inspect
import json
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from runner.cli import main
from runner.models import robustbench as rb

NAME = "Fake2024Tiny"
SPEC = """\
name: zoo
seeds: [0]
data: {{dataset: npz, path: digits32.npz}}
threat: {{norm: linf, eps: 8/255, pixel_range: [0, 1]}}
models:
  - {{name: zoo, arch: 'robustbench:{name}', kwargs: {{dataset: cifar10, threat_model: Linf}}}}
recipes:
  - {{name: std, kind: standard, epochs: 1}}
attacks:
  - {{name: fgsm, kind: fgsm, engine: native}}
  - {{name: pgd5, kind: pgd, engine: native, steps: 5, step_size: eps/2}}
eval: {{n: 100, bootstrap: 50, checklist: false}}
"""


class TinyNet(nn.Module):
    """A RobustBench-style CIFAR model: normalises inside forward with mu/sigma buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mu", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("sigma", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 16 * 16, 10)

    def forward(self, x):
        x = (x - self.mu) / self.sigma
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class Downloads(nn.Module):
    """Like torchvision's resnet50(pretrained=True) in RobustBench's ImageNet Standard_R50."""

    def __init__(self) -> None:
        super().__init__()
        torch.hub.load_state_dict_from_url("https://example.invalid/weights.pth")


class BenchmarkDataset(enum.Enum):
    cifar_10 = "cifar10"
    cifar_100 = "cifar100"
    imagenet = "imagenet"


class ThreatModel(enum.Enum):
    Linf = "Linf"
    L2 = "L2"
    corruptions = "corruptions"


@pytest.fixture
def zoo(monkeypatch, tmp_path):
    """The fake robustbench package; ``calls`` records every download it was asked for."""
    calls: list[str] = []
    models = {
        NAME: {"model": TinyNet, "gdrive_id": "1abc"},
        "Fake2024Downloads": {"model": Downloads, "gdrive_id": "1def"},
        "Fake2024Ensemble": {"model": TinyNet, "gdrive_id": ["1", "2"]},
    }
    pkg = types.ModuleType("robustbench")
    mz = types.ModuleType("robustbench.model_zoo")
    mz.model_dicts = {BenchmarkDataset.cifar_10: {ThreatModel.Linf: models}}
    enums = types.ModuleType("robustbench.model_zoo.enums")
    enums.BenchmarkDataset, enums.ThreatModel = BenchmarkDataset, ThreatModel
    utils = types.ModuleType("robustbench.utils")
    utils.download_gdrive_new = lambda gid, path: calls.append(f"gdrive {gid}")
    pkg.model_zoo, pkg.utils = mz, utils
    for name, mod in (("robustbench", pkg), ("robustbench.model_zoo", mz),
                      ("robustbench.model_zoo.enums", enums), ("robustbench.utils", utils)):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, mod)
    real_hub = torch.hub.load_state_dict_from_url
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: calls.append("hub"))
    monkeypatch.chdir(tmp_path)
    yield calls
    assert sys.modules["robustbench.utils"].download_gdrive_new is utils.download_gdrive_new
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", real_hub)


def _digits32(root) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits as 3x32x32 images in [0, 1] (each pixel a 4x4 block; channels tinted)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(d.images / 16.0, np.ones((4, 4)))[:, None].repeat(3, axis=1)
    x = (x * np.array([1.0, 0.9, 0.8])[None, :, None, None]).astype(np.float32)
    y = d.target.astype(np.int64)
    np.savez(root / "digits32.npz", x_train=x[:1400], y_train=y[:1400], x_test=x[1400:],
             y_test=y[1400:])  # fmt: skip
    return torch.from_numpy(x[1400:]), torch.from_numpy(y[1400:])


@pytest.fixture
def published(zoo, tmp_path):
    """TinyNet trained on the data, saved as RobustBench publishes Carmon2019Unlabeled."""
    x_test, y_test = _digits32(tmp_path)
    data = np.load(tmp_path / "digits32.npz")
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    torch.manual_seed(0)
    net = TinyNet()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(3):
        for i in range(0, len(x), 64):
            loss = nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    state = {f"module.{k}": v for k, v in net.state_dict().items() if k not in ("mu", "sigma")}
    folder = tmp_path / "models" / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 200}, folder / f"{NAME}.pt")
    (tmp_path / "spec.yaml").write_text(SPEC.format(name=NAME))
    with torch.no_grad():
        clean = int((net.eval()(x_test[:100]).argmax(1) == y_test[:100]).sum()) / 100
    return net, clean


def test_a_zoo_model_audits_from_the_model_dir_layout(published, zoo, tmp_path):
    net, clean = published
    assert main(["eval", "spec.yaml", "-o", "out", "-q", "--device", "cpu"]) == 0
    (d,) = list((tmp_path / "out" / "runs").iterdir())
    m = json.loads((d / "metrics.json").read_text())
    acc = {r["attack"]: r["accuracy"] for r in m["results"]}
    # the zoo model's own normalisation, once: exactly its accuracy computed here
    assert acc["clean"] == pytest.approx(clean, abs=1e-12) and clean > 0.8
    assert acc["pgd5"] <= acc["fgsm"] <= acc["clean"]
    prov = m["checkpoint_provenance"]
    assert prov["source"] == "RobustBench's model_dir layout"
    assert prov["path"] == f"models/cifar10/Linf/{NAME}.pt" and prov["format"] == "torch-zip"
    assert prov["unwrapped"][0] == "took the weights under 'state_dict'"
    assert prov["unwrapped"][1].startswith("stripped the DataParallel/DDP prefix 'module.'")
    assert prov["unwrapped"][2].startswith(
        "kept the architecture's normalisation buffers mu, sigma"
    )
    assert m["arch"] == f"robustbench:{NAME}" and zoo == []  # nothing downloaded


def test_a_missing_file_is_refused_without_downloading(zoo, tmp_path, capsys):
    _digits32(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC.format(name=NAME))
    assert main(["eval", "spec.yaml", "-o", "out", "-q", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"no --checkpoint and no local file at models/cifar10/Linf/{NAME}.pt" in err
    assert "advrun never downloads" in err and f"load_model('{NAME}', model_dir='./models'" in err
    assert zoo == [] and not (tmp_path / "out").exists()


def test_a_constructor_that_downloads_is_stopped(zoo, tmp_path, capsys):
    _digits32(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC.format(name="Fake2024Downloads"))
    torch.save({}, tmp_path / "w.pt")
    args = ["eval", "spec.yaml", "--checkpoint", "w.pt", "-o", "out", "-q", "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "would download torch.hub.load_state_dict_from_url" in err
    assert "advrun never downloads" in err and zoo == []  # the hub function was never reached


@pytest.mark.parametrize(
    ("name", "edit", "texts"),
    [
        ("Fake2024Ensemble", None, ("an ensemble of 2 checkpoints",)),
        (
            "Fake2024Tiyn",
            None,
            ("no model 'Fake2024Tiyn' for cifar10 Linf", "did you mean 'Fake2024Tiny'"),
        ),  # fmt: skip
    ],
)
def test_zoo_names_are_checked(zoo, tmp_path, capsys, name, edit, texts):
    _digits32(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC.format(name=name))
    torch.save({}, tmp_path / "w.pt")
    args = ["eval", "spec.yaml", "--checkpoint", "w.pt", "-o", "out", "-q", "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert all(t in err for t in texts), err


@pytest.mark.parametrize(
    ("old", "new", "texts"),
    [
        ("threat_model: Linf}}", "threat_model: Linf}, normalize: cifar10}",
         ("spec.yaml:6:", "apply it twice", "remove models[].normalize")),
        ("pixel_range: [0, 1]", "pixel_range: [0, 255]", ("spec.yaml:4:", "takes pixels in [0, 1]")),
        ("threat_model: Linf", "threat_model: linf", ("RobustBench's threat_model is one of",
                                                      "did you mean 'Linf'")),
        ("dataset: cifar10,", "dataset: cifar10, model_dri: m,", ("not 'model_dri'",
                                                                  "did you mean 'model_dir'")),
    ],
    ids=["normalize-twice", "pixel-range", "threat-model-name", "unknown-kwarg"],
)  # fmt: skip
def test_the_spec_refuses_what_cannot_fit_a_zoo_model(tmp_path, capsys, monkeypatch, old, new,
                                                      texts):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    text = SPEC.format(name=NAME)
    assert old in text
    (tmp_path / "spec.yaml").write_text(text.replace(old, new))
    assert main(["validate", "spec.yaml"]) == 2  # no robustbench needed to say so
    err = capsys.readouterr().err
    assert all(t in err for t in texts), err


def test_load_model_mirrors_robustbenchs_signature(published, zoo, tmp_path):
    net, _ = published
    params = list(inspect.signature(rb.load_model).parameters)
    # robustbench.utils.load_model (1.1.1) less its deprecated `norm`
    assert params == ["model_name", "model_dir", "dataset", "threat_model", "custom_checkpoint"]
    model = rb.load_model(NAME, model_dir="models", dataset="cifar10", threat_model="Linf")
    x = torch.rand(4, 3, 32, 32)
    assert not model.training and torch.equal(model(x), net(x))
    with pytest.raises(Exception, match="advrun never downloads"):
        rb.load_model(NAME, model_dir="elsewhere")
    assert zoo == []


def test_real_robustbench():
    """The real package, where it imports: its CIFAR-10 Standard WRN-28-10 through the loader."""
    import importlib.util

    if importlib.util.find_spec("robustbench") is None:
        pytest.skip("robustbench is not installed (optional: pip install 'advrun[robustbench]')")
    try:
        from robustbench.model_zoo import model_dicts  # noqa: F401
    except Exception as e:  # e.g. torchvision's C++ ops missing beside a CPU build of torch
        pytest.skip(
            f"robustbench is installed but does not import beside torch {torch.__version__}: "
            f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
        )
    model = rb.build("robustbench:Standard", (3, 32, 32), 10, {})
    path = rb.checkpoint_path("robustbench:Standard", {"model_dir": "models-real"})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = rb.load_model("Standard", model_dir="models-real")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))
