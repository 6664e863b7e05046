"""bench/advrun_api.py: the input that broke each example, as advrun's evaluation produced it.

On a random model the bench judges every method's final inputs again by many draws, so the input
it keeps for each example must be the one the stage that broke it returned, escalation rungs
included (the Square ladder's continued search does not go through the stages' ``generate``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from digits_model import trained
from resolved import LINF_01
from test_escalation import FAST, Quantized

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import advrun_api as adv  # noqa: E402

N = 60


def test_kept_inputs_are_the_breaking_ones_with_the_square_ladder():
    model, data = trained()
    masked = Quantized(model).eval()
    x, y = data.x_test[:N], data.y_test[:N]
    out = adv.run_advrun(masked, x, y, FAST, LINF_01, keep_adv=True, escalated=True,
                         escalation={"enabled": True, "max_queries": 2500})  # fmt: skip
    rungs = [r["attack"] for r in out.escalation["rungs"]]
    assert rungs[0] == "square_1000" and out.escalation["rungs"][0]["broken"] > 0
    ladder = np.isin(out.broken_by, rungs)
    assert ladder.any(), "an example broken by a Square rung, so its input is checked"
    assert out.x_adv is not None and out.x_adv.shape == x.shape
    assert float((out.x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(out.x_adv.min()) >= 0.0 and float(out.x_adv.max()) <= 1.0
    with torch.no_grad():
        wrong = (masked(out.x_adv).argmax(1) != y).numpy()
    broken = out.broken_by != ""
    # a deterministic model: every kept input fools it exactly where the worst case says broken
    np.testing.assert_array_equal(wrong, broken)
    assert not torch.equal(out.x_adv[ladder], x[ladder])
