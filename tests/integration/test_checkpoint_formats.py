"""`advrun eval --checkpoint` on every common way a state_dict travels, through the real CLI.

One small CNN is trained on digits; its very weights are written in each format (torch's legacy
and zip serialization, storages tagged with a CUDA location, a DataParallel state_dict, each
wrapper, EMA weights beside raw ones, AveragedModel's, safetensors) and each file is audited. The
audit of a plain state_dict is the reference: every other file must give exactly its numbers
(same weights, same seeds), and its metrics and log must say what was found and unwrapped.

Files "saved on CUDA" are written here without a GPU: ``torch.serialization.location_tag`` (which
both writers call for every storage to get the location string stored beside it) is replaced for
the duration of ``torch.save`` by one that answers ``cuda:0``. The test proves the tag is in the
file: loading it without ``map_location`` fails on this CPU-only machine with torch's own
"Attempting to deserialize object on a CUDA device".
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.cli import main
from runner.models import build_model

SPEC = """\
name: formats
seeds: [0]
data: {dataset: digits}
threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}
models:
  - {name: cnn, arch: small_cnn, kwargs: {width: 0.25}}
recipes:
  - {name: std, kind: standard, epochs: 1}
attacks:
  - {name: fgsm, kind: fgsm, engine: native}
  - {name: pgd5, kind: pgd, engine: native, steps: 5, step_size: eps/2}
eval: {n: 60, bootstrap: 50, checklist: false}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The trained weights, the spec, and the reference audit of a plain zip state_dict."""
    root = tmp_path_factory.mktemp("formats")
    (root / "spec.yaml").write_text(SPEC)
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 8, 8), 10, {"width": 0.25})
    from runner.execute.prepare import prepare
    from runner.spec.core import DataSpec

    data = prepare(DataSpec(dataset="digits"), (0.0, 1.0), torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(4):
        for i in range(0, len(data.x_train), 64):
            x, y = data.x_train[i : i + 64], data.y_train[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.save(model.state_dict(), root / "plain.pt")
    ref = _audit(root, "plain.pt")
    return root, model, ref


def _audit(root: Path, name: str, *flags: str) -> dict:
    """``advrun eval`` of one file into its own output directory; its metrics.json and log."""
    out = root / f"out-{name}-{'-'.join(flags)}"
    argv = ["eval", str(root / "spec.yaml"), "--checkpoint", str(root / name), "-o", str(out)]
    assert main([*argv, "-q", "--device", "cpu", *flags]) == 0
    (d,) = list((out / "runs").iterdir())
    metrics = json.loads((d / "metrics.json").read_text())
    return {"metrics": metrics, "log": (d / "log.txt").read_text(), "dir": d}


def _accuracies(audit: dict) -> dict[str, float]:
    return {r["attack"]: r["accuracy"] for r in audit["metrics"]["results"]}


@contextlib.contextmanager
def saved_on_cuda():
    """torch.save tags every storage ``cuda:0``, as on a GPU machine (see the module docstring)."""
    import torch.serialization as ser

    real = ser.location_tag
    ser.location_tag = lambda storage: "cuda:0"
    try:
        yield
    finally:
        ser.location_tag = real


def _perturbed(sd: dict) -> dict:
    """Other weights of the same shapes (what a wrong choice of raw/EMA would audit)."""
    return {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in sd.items()}


def _dataparallel(model) -> dict:
    return torch.nn.DataParallel(model).state_dict()  # on CPU: wraps without replicas


def _averaged(model) -> dict:
    avg = torch.optim.swa_utils.AveragedModel(model)
    return avg.state_dict()  # n_averaged + module.*


META = {"epoch": 40, "best_acc": np.float64(0.51), "args": argparse.Namespace(lr=0.1)}

# (file name, what torch.save gets from (model, sd), torch.save kwargs, flags, format, steps)
CASES = {
    "legacy": ("legacy.pth", lambda m, sd: sd, {"_use_new_zipfile_serialization": False}, (),
               "torch-legacy", []),
    "dataparallel": ("dp.pt", lambda m, sd: _dataparallel(m), {}, (), "torch-zip",
                     ["stripped the DataParallel/DDP prefix 'module.' from all"]),
    "state_dict": ("w1.pt", lambda m, sd: {"state_dict": sd, **META}, {}, (), "torch-zip",
                   ["took the weights under 'state_dict'"]),
    "model": ("w2.pt", lambda m, sd: {"model": sd, "optimizer": {"lr": torch.tensor(0.1)}}, {}, (),
              "torch-zip", ["took the weights under 'model'"]),
    "model_state_dict": ("w3.pt", lambda m, sd: {"model_state_dict": sd, "epoch": 3}, {}, (),
                         "torch-zip", ["took the weights under 'model_state_dict'"]),
    "net": ("w4.tar", lambda m, sd: {"net": {f"module.{k}": v for k, v in sd.items()}, **META},
            {"_use_new_zipfile_serialization": False}, (), "torch-legacy",
            ["took the weights under 'net'", "stripped the DataParallel/DDP prefix"]),
    "ema-flag": ("ema.pt", lambda m, sd: {"model": _perturbed(sd), "ema": sd, "epoch": 9}, {},
                 ("--weights", "ema"), "torch-zip", ["took EMA weights under 'ema'"]),
    "raw-flag": ("raw.pt", lambda m, sd: {"state_dict": sd, "state_dict_ema": _perturbed(sd)},
                 {}, ("--weights", "raw"), "torch-zip", ["took the weights under 'state_dict'"]),
    "only-ema-averaged": ("avg.pt", lambda m, sd: {"model_ema": _averaged(m)}, {}, (),
                          "torch-zip", ["took EMA weights under 'model_ema'", "dropped 'n_averaged'",
                                        "stripped the DataParallel/DDP prefix"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_each_format_audits_to_the_same_numbers(trained, case):
    root, model, ref = trained
    name, content, kwargs, flags, fmt, steps = CASES[case]
    torch.save(content(model, model.state_dict()), root / name, **kwargs)
    got = _audit(root, name, *flags)
    assert _accuracies(got) == _accuracies(ref)  # the same weights: exactly the same numbers
    prov = got["metrics"]["checkpoint_provenance"]
    assert prov["format"] == fmt and prov["path"] == str(root / name)
    assert prov["sha256"] == hashlib.sha256((root / name).read_bytes()).hexdigest()
    assert prov["sha256"] == got["metrics"]["checkpoint_sha256"]
    assert len(prov["unwrapped"]) == len(steps)
    for step, want in zip(prov["unwrapped"], steps, strict=True):
        assert step.startswith(want), (step, want)
        assert step in got["log"]  # the run log says it too
    assert prov["weights"] == ({"ema-flag": "ema", "raw-flag": "raw", "only-ema-averaged": "ema"}
                               .get(case))  # fmt: skip
    assert prov["tensors"] == len(model.state_dict()) and prov["loaded_on"] == "cpu"
    assert f"sha256 {prov['sha256']}" in got["log"] and f"found {prov['found']}" in got["log"]


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_storages_saved_on_cuda_load_on_a_cpu_only_machine(trained, legacy):
    root, model, ref = trained
    if torch.cuda.is_available():
        pytest.skip("proves a CPU-only load; this machine has CUDA")
    name = f"cuda-{'legacy' if legacy else 'zip'}.pt"
    with saved_on_cuda():
        torch.save(model.state_dict(), root / name, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(RuntimeError, match="Attempting to deserialize object on a CUDA device"):
        torch.load(root / name, weights_only=True)  # the tags really say cuda:0
    got = _audit(root, name)
    assert _accuracies(got) == _accuracies(ref)
    prov = got["metrics"]["checkpoint_provenance"]
    assert prov["saved_on"] == ["cuda:0"] and prov["loaded_on"] == "cpu"
    assert prov["format"] == ("torch-legacy" if legacy else "torch-zip")
    assert "tensors saved on cuda:0 mapped to cpu" in got["log"]


def test_safetensors(trained):
    from safetensors.torch import save_file

    root, model, ref = trained
    save_file(model.state_dict(), root / "model.safetensors")
    got = _audit(root, "model.safetensors")
    assert _accuracies(got) == _accuracies(ref)
    prov = got["metrics"]["checkpoint_provenance"]
    assert prov["format"] == "safetensors" and prov["found"].startswith("a state_dict of")


def test_the_spec_chooses_ema_weights_and_the_flag_overrides_it(trained):
    root, model, ref = trained
    sd = model.state_dict()
    torch.save({"model": _perturbed(sd), "model_ema": sd}, root / "both.pt")
    spec = root / "spec.yaml"
    text = spec.read_text()
    try:
        spec.write_text(
            text.replace("kwargs: {width: 0.25}}", "kwargs: {width: 0.25}, weights: ema}")
        )
        got = _audit(root, "both.pt")
        assert _accuracies(got) == _accuracies(ref)
        assert got["metrics"]["checkpoint_provenance"]["weights"] == "ema"
        raw = _audit(root, "both.pt", "--weights", "raw")  # the flag wins over the spec
        assert raw["metrics"]["checkpoint_provenance"]["weights"] == "raw"
        # the zeroed weights give equal logits, so every prediction is class 0: measured 0.1,
        # exactly the share of class 0, no chance involved; the trained model measured 0.933 on
        # 60 examples, SE 0.032: 13 SE above 0.5
        assert _accuracies(raw)["clean"] < 0.5 < _accuracies(ref)["clean"]
        run = json.loads((raw["dir"] / "run.json").read_text())
        assert run["model"]["weights"] == "raw" and raw["dir"] != got["dir"]  # its own audit id
    finally:
        spec.write_text(text)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_a_file_really_saved_on_a_gpu_loads_on_either_device(tmp_path, legacy):
    """The real thing the CPU-only test imitates: tensors saved from the GPU."""
    from runner.checkpoint import load_checkpoint

    sd = {"w": torch.randn(4, 3, device="cuda"), "b": torch.arange(3, device="cuda")}
    path = tmp_path / "gpu.pt"
    torch.save({"state_dict": sd}, path, _use_new_zipfile_serialization=not legacy)
    for device in ("cpu", "cuda:0"):
        got = load_checkpoint(path, device)
        assert got.saved_on == ("cuda:0",) and got.unwrapped == (
            "took the weights under 'state_dict'",
        )
        assert all(got.state[k].device == torch.device(device) for k in sd)
        assert all(torch.equal(got.state[k].cpu(), sd[k].cpu()) for k in sd)
