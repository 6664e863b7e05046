"""The suite's channels-last layout on a CPU: same logits, weights restored, and models it cannot
run (a ``.view`` of a non-contiguous tensor) keep their own layout."""

from __future__ import annotations

import torch
from digits_model import trained
from torch import nn

from runner.eval.common import fast_layout
from runner.models import build_model


class Viewing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = self.conv(x)
        return self.fc(h.view(h.shape[0], -1))  # fails on a channels-last tensor


def _layouts(model: nn.Module) -> list[bool]:
    return [p.is_contiguous() for p in model.parameters() if p.dim() == 4]


def test_channels_last_inside_same_logits_outside_restored():
    torch.manual_seed(0)
    model = build_model("small_cnn", (3, 16, 16), 10, {"width": 0.25}).eval()
    x = torch.rand(32, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
    with fast_layout(model, x) as m:
        assert all(
            p.is_contiguous(memory_format=torch.channels_last)
            for p in m.parameters()
            if p.dim() == 4
        )
        with torch.no_grad():
            assert torch.allclose(m(x), ref, rtol=1e-4, atol=1e-5)
    assert all(_layouts(model))
    with torch.no_grad():
        assert torch.allclose(model(x), ref, rtol=0, atol=0)


def test_a_model_that_cannot_run_channels_last_keeps_its_layout():
    model = Viewing().eval()
    x = torch.rand(8, 3, 8, 8)
    with fast_layout(model, x) as m:
        assert all(_layouts(m))
        assert m(x).shape == (8, 10)
    assert all(_layouts(model))


def test_the_suite_leaves_the_model_as_it_found_it():
    from resolved import LINF_01, attack, evaluation

    from runner.eval.cascade import run_suite
    from runner.eval.context import EvalContext

    model, data = trained()
    x, y = data.x_test[:32], data.y_test[:32]
    fgsm = attack("fgsm", eps=0.1, norm="linf", engine="native")
    res = run_suite(EvalContext(model, x, y, LINF_01, 10, evaluation(batch_size=512, suite="cascade"),
                                [fgsm], lambda _: None))  # fmt: skip
    assert (
        all(_layouts(model))
        and res.info["fgsm"]["backward_passes"] == res.info["fgsm"]["attacked"] > 0
    )
