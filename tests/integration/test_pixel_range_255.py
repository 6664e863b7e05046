"""A model trained on 0-255 inputs audits with ``threat.pixel_range: [0, 255]``, eps in those units.

A small CNN is trained by a plain loop on digits scaled to [0, 255] and its state_dict audited
through the CLI at Linf eps 25.5 (0.1 of the range). The same function of [0, 1] inputs is the
same network with its first convolution's weights multiplied by 255 (conv(255 x; W) =
conv(x; 255 W), zero padding included); it is audited at eps 0.1 on [0, 1]. In exact arithmetic
the two audits are one computation in two units (every attack step, random start and projection
scales by 255), so their per-example outcomes must agree; float rounding may flip an example
whose margin is ~1e-6, which is why the comparison allows one example in a hundred rather than
none.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from runner.cli import main
from runner.execute.prepare import prepare
from runner.models import build_model
from runner.spec.core import DataSpec

SPEC = """\
name: range-{tag}
seeds: [0]
data: {{dataset: digits}}
threat: {{norm: linf, eps: {eps}, pixel_range: [0, {hi}]}}
models:
  - {{name: cnn, arch: small_cnn, kwargs: {{width: 0.25}}}}
recipes:
  - {{name: std, kind: standard, epochs: 1}}
attacks:
  - {{name: fgsm, kind: fgsm, engine: native}}
  - {{name: pgd10, kind: pgd, engine: native, steps: 10, step_size: eps/4}}
eval: {{n: 300, bootstrap: 200, checklist: false, suite: independent}}
"""
N = 300


@pytest.fixture(scope="module")
def audits(tmp_path_factory):
    """The 0-255 model's audit and its [0, 1] twin's: metrics and per-example outcomes."""
    root = tmp_path_factory.mktemp("range")
    data = prepare(DataSpec(dataset="digits"), (0.0, 255.0), torch.device("cpu"))
    assert float(data.x_train.max()) > 200  # the training loop really sees 0-255 pixels
    torch.manual_seed(0)
    model = build_model("small_cnn", data.input_shape, data.num_classes, {"width": 0.25})
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(6):
        perm = torch.randperm(len(data.x_train))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(data.x_train[b]), data.y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    sd = model.state_dict()
    torch.save(sd, root / "model255.pt")
    twin = {**sd, "features.0.weight": sd["features.0.weight"] * 255.0}
    torch.save(twin, root / "model01.pt")
    out = {}
    for tag, eps, hi in (("255", 25.5, 255), ("01", 0.1, 1)):
        (root / f"{tag}.yaml").write_text(SPEC.format(tag=tag, eps=eps, hi=hi))
        argv = ["eval", str(root / f"{tag}.yaml"), "--checkpoint", str(root / f"model{tag}.pt")]
        assert main([*argv, "-o", str(root / tag), "-q", "--device", "cpu"]) == 0
        (d,) = list((root / tag / "runs").iterdir())
        out[tag] = (
            json.loads((d / "metrics.json").read_text()),
            pd.read_parquet(d / "examples.parquet"),
        )
    return out


def test_perturbations_stay_within_eps_in_0_255_units(audits):
    metrics, ex = audits["255"]
    assert {r["attack"]: r["eps"] for r in metrics["results"]}["pgd10"] == 25.5
    for attack in ("fgsm", "pgd10"):
        rows = ex[(ex["attack"] == attack) & ex["attacked"]]
        assert len(rows) > 100
        assert rows["distance"].max() <= 25.5 * (1 + 1e-5)  # projected onto the Linf ball
    fgsm = ex[(ex["attack"] == "fgsm") & ex["attacked"]]["distance"]
    # FGSM moves every pixel by eps unless the range clips it: the Linf distance is eps itself,
    # 25.5 in 0-255 units (a unit mix-up would give 0.1 or 6502.5)
    assert fgsm.min() == pytest.approx(25.5, rel=1e-5)
    twin = audits["01"][1]
    twin_fgsm = twin[(twin["attack"] == "fgsm") & twin["attacked"]]["distance"]
    assert twin_fgsm.max() == pytest.approx(0.1, rel=1e-5)


def test_accuracy_matches_the_0_1_audit_of_the_same_function(audits):
    (m255, ex255), (m01, ex01) = audits["255"], audits["01"]
    acc255 = {r["attack"]: r["accuracy"] for r in m255["results"]}
    acc01 = {r["attack"]: r["accuracy"] for r in m01["results"]}
    # the model learned (chance 0.1) and the attacks bite. Measured: clean 0.937, PGD-10 0.113
    # on 300 examples. SE of the clean accuracy at the bound, sqrt(0.8 * 0.2 / 300) = 0.023:
    # 5.9 SE (the bound was 0.9, 2.6 SE of a retrained model's accuracy); the attack's gap 0.82
    # against 0.1, SE of the difference 0.023: 31 SE
    assert acc255["clean"] > 0.8 and acc255["clean"] == acc01["clean"]
    assert acc255["pgd10"] < acc255["clean"] - 0.1  # the attacks do bite at this budget
    for attack in ("fgsm", "pgd10", "worst_case"):
        a = ex255[ex255["attack"] == attack].set_index("example")["correct"]
        b = ex01[ex01["attack"] == attack].set_index("example")["correct"]
        assert len(a) == len(b) == N
        # one computation in two units (docstring), both sides deterministic: no chance, only
        # float rounding. Measured 0 discordant examples of 300 for every attack (paired SE 0);
        # the 3 allowed are float flips at the boundary, not a statistical margin
        assert (a != b).sum() <= N // 100, attack
        assert abs(acc255[attack] - acc01[attack]) <= 0.01 + 1e-12
