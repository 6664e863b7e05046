"""`advrun eval`: audit a saved model through the real CLI, stored like a run; bad checkpoints."""

from __future__ import annotations

import json
import sys
import textwrap

import pandas as pd
import pytest
import torch

from runner.cli import main
from runner.models import build_model

SPEC = """\
name: audit-test
seeds: [0]
data: {dataset: digits}
threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}
models:
  - {name: cnn, arch: small_cnn, kwargs: {width: 0.25}}
recipes:
  - {name: std, kind: standard, epochs: 2}
attacks:
  - {name: fgsm, kind: fgsm, engine: native}
  - {name: pgd5, kind: pgd, engine: native, steps: 5, step_size: eps/2}
eval: {n: 60, bootstrap: 100, eps_curve: [0, 0.05, 0.1], checklist_n: 32}
"""


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A quickly trained model's state_dict, audited with `advrun eval`."""
    root = tmp_path_factory.mktemp("eval")
    spec = root / "spec.yaml"
    spec.write_text(SPEC)
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 8, 8), 10, {"width": 0.25})
    from runner.execute.prepare import prepare
    from runner.spec.core import DataSpec

    data = prepare(DataSpec(dataset="digits"), (0.0, 1.0), torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(4):
        for i in range(0, len(data.x_train), 64):
            loss = torch.nn.functional.cross_entropy(
                model(data.x_train[i : i + 64]), data.y_train[i : i + 64]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    ckpt = root / "weights.pt"
    torch.save(model.state_dict(), ckpt)
    out = root / "out"
    code = main(["eval", str(spec), "--checkpoint", str(ckpt), "-o", str(out), "-q"])
    return root, spec, ckpt, out, code


def test_eval_stores_a_run_like_training_does(audited):
    root, spec, ckpt, out, code = audited
    assert code == 0
    (d,) = list((out / "runs").iterdir())
    assert d.name.startswith("cnn@audit[weights]-")
    m = json.loads((d / "metrics.json").read_text())
    assert m["kind"] == "audit" and m["checkpoint_sha256"] and m["train_seconds"] == 0.0
    rows = {r["attack"]: r for r in m["results"]}
    assert set(rows) == {"clean", "fgsm", "pgd5", "worst_case"}
    # the model learned: measured 0.933 on 60 examples, SE 0.032: 5.7 SE above 0.75 (3.2 SE
    # even at the bound's own SE, 0.056); it was 0.8, 4.1 SE (chance is 0.1)
    assert rows["clean"]["accuracy"] > 0.75 and rows["clean"]["n"] == 60
    # the cascade attacks only what survived the cheaper attacks: this order is exact
    assert rows["worst_case"]["accuracy"] <= rows["fgsm"]["accuracy"] <= rows["clean"]["accuracy"]
    assert {c["check"] for c in m["checklist"]} >= {"gradients", "deterministic", "large_eps"}
    assert [c["eps"] for c in m["curves"]] == [0.0, 0.05, 0.1]
    ex = pd.read_parquet(d / "examples.parquet")
    assert {"broken_by", "margin", "distance"} <= set(ex.columns)
    res = pd.read_csv(out / "results.csv")
    assert set(res["recipe"]) == {"audit"} and set(res["attack"]) >= {"clean", "worst_case"}
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns[:8]) == ["run_id", "model", "recipe", "seed", "attack", "eps",
                                        "accuracy", "n"]  # fmt: skip
    assert len(curves) == 3 and curves["eps"].tolist() == [0.0, 0.05, 0.1]


def test_eval_again_skips_and_force_redoes(audited, capsys):
    root, spec, ckpt, out, _ = audited
    assert main(["eval", str(spec), "--checkpoint", str(ckpt), "-o", str(out)]) == 0
    assert "already evaluated" in capsys.readouterr().out


def _fails(args, capsys) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_bad_checkpoints_are_clear_errors(audited, tmp_path, capsys):
    _, spec, ckpt, _, _ = audited
    out = ["-o", str(tmp_path / "o")]
    err = _fails(["eval", str(spec), "--checkpoint", str(tmp_path / "nope.pt"), *out], capsys)
    assert "no such file" in err and "Traceback" not in err
    wrong = tmp_path / "wrong.pt"
    torch.save(build_model("small_cnn", (1, 8, 8), 10).state_dict(), wrong)  # width 1, not 0.25
    err = _fails(["eval", str(spec), "--checkpoint", str(wrong), *out], capsys)
    assert "does not fit model 'cnn'" in err and "wrong shapes" in err
    pickled = tmp_path / "pickled.pt"
    torch.save({"weights": build_model("small_cnn", (1, 8, 8), 10, {"width": 0.25})}, pickled)
    err = _fails(["eval", str(spec), "--checkpoint", str(pickled), *out], capsys)
    assert "a full pickled nn.Module (runner.models.small_cnn.SmallCNN), not a state_dict" in err
    assert "nothing in it was run" in err and "weights_only=False" in err  # how to convert it
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    err = _fails(["eval", str(spec), "--checkpoint", str(junk), *out], capsys)
    assert "not a PyTorch checkpoint" in err
    err = _fails(["eval", str(spec), *out], capsys)
    assert "untrained" in err and "--checkpoint" in err
    err = _fails(["eval", str(spec), "--checkpoint", str(ckpt), "--model", "cn", *out], capsys)
    assert "did you mean 'cnn'" in err


def test_model_factory_needs_allow_import(audited, tmp_path, monkeypatch, capsys):
    _, _, ckpt, _, _ = audited
    pkg = tmp_path / "thirdparty"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "zoo.py").write_text(
        textwrap.dedent(
            f"""
            import torch
            from runner.models import build_model

            def pretrained(input_shape, num_classes):
                m = build_model("small_cnn", input_shape, num_classes, {{"width": 0.25}})
                m.load_state_dict(torch.load({str(ckpt)!r}, weights_only=True))
                return m
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.replace(
            "{name: cnn, arch: small_cnn, kwargs: {width: 0.25}}",
            "{name: zoo, arch: 'thirdparty.zoo:pretrained'}",
        ).replace("eps_curve: [0, 0.05, 0.1], checklist_n: 32", "checklist: false")
    )
    out = ["-o", str(tmp_path / "o")]
    err = _fails(["eval", str(spec), *out], capsys)
    assert "--allow-import" in err
    assert main(["eval", str(spec), "--allow-import", "thirdparty.*", *out, "-q"]) == 0
    (d,) = list((tmp_path / "o" / "runs").iterdir())
    assert d.name.startswith("zoo@audit[factory]-")
    sys.modules.pop("thirdparty.zoo", None)
