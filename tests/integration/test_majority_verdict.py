"""A random model's verdict by draws (:func:`runner.eval.common.majority_draw`): an input counts as
misclassified exactly when most draws misclassify it, and the row it gives agrees with that."""

from __future__ import annotations

import torch
from torch import nn

from runner.eval.common import majority_draw, margins

DRAWS = 20


class Scripted(nn.Module):
    """Call ``t`` misclassifies example ``i`` (as class 1) when ``t < wrong[i]``: example ``i`` is
    misclassified in exactly ``wrong[i]`` of the first ``DRAWS`` calls."""

    def __init__(self, wrong: torch.Tensor) -> None:
        super().__init__()
        self.wrong, self.calls = wrong, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 3)
        bad = self.calls < self.wrong
        logits[:, 0] = torch.where(bad, 0.0, 2.0)  # the true class
        logits[:, 1] = torch.where(bad, 1.0 + self.wrong.float() / 100, 0.5)
        self.calls += 1
        return logits


def test_the_majority_draw_is_misclassified_exactly_when_most_draws_are():
    wrong = torch.arange(DRAWS + 1)  # 0 .. 20 misclassifying draws
    y = torch.zeros(len(wrong), dtype=torch.long)
    pred, margin = majority_draw(Scripted(wrong), torch.zeros(len(wrong), 4), y, DRAWS, bs=64)
    broken = wrong > DRAWS // 2  # 11 of 20 or more
    assert torch.equal(margin < 0, broken)
    assert torch.equal(pred != y, broken)  # the row agrees with its verdict
    # the margin is that of a real draw: -1 - wrong/100 when misclassified, 1.5 otherwise
    expected = torch.where(broken, -(1.0 + wrong.float() / 100), torch.tensor(1.5))
    assert torch.allclose(margin, expected)


def test_on_a_deterministic_model_the_majority_draw_is_the_one_pass():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    pred, margin = majority_draw(model, x, y, DRAWS, bs=16)
    with torch.no_grad():
        logits = model(x)
    assert torch.equal(pred, logits.argmax(1))
    assert torch.allclose(margin, margins(logits, y))
