"""deterministic: true: torch's deterministic algorithms, one thread, provenance recorded, and an
operation without a deterministic implementation failing the run loudly instead of varying."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from runner.cli import main

SPEC = """\
name: det
seeds: [0]
device: cpu
deterministic: {flag}
data: {{dataset: digits, limit: 200}}
threat: {{norm: linf, eps: 0.1}}
models: [{{name: m, arch: '{arch}'}}]
recipes: [{{name: std, kind: standard, epochs: 1, monitor: {{n: 32, steps: 2}}}}]
attacks: [{{name: fgsm, kind: fgsm, engine: native}}]
eval: {{n: 64, checklist: false, bootstrap: 20}}
"""

# put_ (accumulate=False) has no deterministic implementation, on the CPU too
MODEL = """
import torch
from torch import nn

class Scattering(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        x = x.flatten(1)
        buf = torch.zeros(x.shape[1], device=x.device)
        buf.put_(torch.tensor([0, 0], device=x.device), torch.ones(2, device=x.device))
        return self.fc(x + buf)

def make(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return Scattering(n, num_classes)
"""


@pytest.fixture
def scattering(tmp_path, monkeypatch):
    pkg = tmp_path / "detzoo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent(MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "detzoo.models:make"


def _run(tmp_path, flag: str, arch: str, capsys) -> tuple[int, str, dict]:
    spec = tmp_path / f"{flag}.yaml"
    spec.write_text(SPEC.format(flag=flag, arch=arch))
    out = tmp_path / f"out-{flag}"
    code = main(["run", str(spec), "-o", str(out), "-q", "--no-report",
                 "--allow-import", "detzoo.*"])  # fmt: skip
    err = capsys.readouterr().err
    (d,) = (out / "runs").iterdir()
    return code, err, json.loads((d / "status.json").read_text())


def test_an_operation_without_a_deterministic_implementation_fails_loudly(
    tmp_path, scattering, capsys
):
    before = torch.get_num_threads()
    try:
        code, err, status = _run(tmp_path, "true", scattering, capsys)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(before)
    assert code == 1 and status["state"] == "failed"
    assert "deterministic: true, but an operation has no deterministic implementation" in err
    assert "put_" in status["diagnosis"] and "set deterministic: false" in status["diagnosis"]
    assert "Traceback" not in err


def test_the_fast_path_allows_it(tmp_path, scattering, capsys):
    code, _, status = _run(tmp_path, "false", scattering, capsys)
    assert code == 0 and status["state"] == "done"


def test_the_flag_threads_and_versions_are_recorded(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        code, _, status = _run(tmp_path, "true", "mlp", capsys)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(before)
    assert code == 0
    (d,) = (tmp_path / "out-true" / "runs").iterdir()
    run = json.loads((d / "run.json").read_text())
    m = json.loads((d / "metrics.json").read_text())
    assert run["deterministic"] is True
    ex = m["execution"]
    assert ex["deterministic"] is True and ex["threads"] == 1 and ex["device"] == "cpu"
    assert ex["train"]["threads"] == 1 and ex["world_size"] == 1
    assert {"python", "torch", "adversarial-robustness-toolbox", "advrun"} <= set(m["versions"])
    assert status["deterministic"] is True and status["threads"] == 1
