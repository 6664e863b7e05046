"""The native engine's GPU fast path: training set on the device (or pinned on the host when it
does not fit), torch.compile, no weights mixed up. The CUDA tests skip without a GPU; the
checks that need none run everywhere."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from runner.cli import main

SPEC = """\
name: gpu
seeds: [0]
device: {device}
data: {{dataset: digits, limit: 600}}
threat: {{norm: linf, eps: 0.1}}
models: [{{name: cnn, arch: small_cnn}}]
recipes:
  - {{name: r, kind: pgd, steps: 3, step_size: eps/2, epochs: 2, batch_size: 128,
     monitor: {{n: 64, steps: 3}}{extra}}}
attacks: [{{name: pgd5, kind: pgd, engine: native, steps: 5, step_size: eps/4}}]
eval: {{n: 128, checklist: false, bootstrap: 50}}
"""


def _run(tmp_path, name, device="cuda", extra="", det=False) -> tuple[pd.DataFrame, str]:
    spec = tmp_path / f"{name}.yaml"
    text = SPEC.format(device=device, extra=extra)
    spec.write_text(text.replace("seeds: [0]", "seeds: [0]\ndeterministic: true") if det else text)
    out = tmp_path / name
    assert main(["run", str(spec), "-o", str(out), "-q", "--no-report"]) == 0
    (d,) = (out / "runs").iterdir()
    return pd.read_csv(d / "epochs.csv"), (d / "log.txt").read_text()


@pytest.mark.gpu
def test_a_training_set_too_large_for_the_gpu_trains_from_pinned_host_memory(tmp_path, monkeypatch):
    on_device, log_a = _run(tmp_path, "on_device", det=True)
    assert "pinned" not in log_a
    monkeypatch.setattr("runner.execute.prepare.DEVICE_SHARE", 0.0)  # nothing "fits"
    pinned, log_b = _run(tmp_path, "pinned", det=True)
    assert "training set pinned on the host" in log_b
    # same batches, same seeds: the placement must not change what is trained. Exact, not
    # within a tolerance: both runs are deterministic (torch's deterministic kernels, no cuDNN
    # autotuning) and see the same bytes, so any difference is a mix-up. (It was atol 0.02 on
    # validation accuracies over 64 examples: 1.3 examples, under one SE of ~0.06 there.)
    cols = ["epoch", "loss", "val_clean", "val_robust", "forward_passes"]
    pd.testing.assert_frame_equal(on_device[cols], pinned[cols], check_exact=True)


@pytest.mark.gpu
def test_compile_trains_and_checkpoints_keep_the_plain_keys(tmp_path):
    epochs, log = _run(tmp_path, "compiled", extra=", compile: true")
    assert epochs["loss"].notna().all() and "ignored" not in log
    (d,) = (tmp_path / "compiled" / "runs").iterdir()
    state = torch.load(d / "checkpoints" / "last.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state)


def test_compile_off_cuda_is_ignored_with_a_note(tmp_path):
    _, log = _run(tmp_path, "cpu", device="cpu", extra=", compile: true")
    assert "note: compile apply on CUDA only; ignored on cpu" in log


def test_compile_with_engine_art_is_refused_at_validation(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(device="cpu", extra=", compile: true, engine: art"))
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:9:43: recipes.0.compile: compile applies to the native engine only" in err
