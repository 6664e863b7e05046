"""bench/references.py: which stage of the original AutoAttack broke each example.

The replay of the original's robust flags is checked on hand-made verdict sequences (fast) and
on a real run of ``pyautoattack`` (slow; skipped without the ``bench`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import references  # noqa: E402


def _t(*v: int) -> torch.Tensor:
    return torch.tensor(v)


def test_replay_attributes_each_example_to_the_stage_that_broke_it():
    y = _t(0, 1, 2, 3, 4)
    events = [
        ("logits", _t(9, 9, 9, 9, 9)),  # the original's checks: not the clean pass
        ("logits", _t(0, 1, 9, 3, 4)),  # clean pass: example 2 misclassified
        ("apgd-ce", _t(0, 1, 3, 4)),  # attacks 0, 1, 3, 4
        ("logits", _t(0, 7, 3, 4)),  # breaks 1
        ("apgd-t", _t(0, 3, 4)),
        ("logits", _t(5, 3, 4)),  # breaks 0
    ]
    correct = np.array([False, False, False, True, True])
    stage = references._attribute(events, correct, y, clean_batches=1)
    assert stage.tolist() == ["apgd-t", "apgd-ce", "clean", "", ""]
    assert references._counts(stage) == {"apgd-ce": 1, "apgd-t": 1, "clean": 1}


def test_replay_follows_batches_in_index_order():
    y = _t(0, 1, 2, 3, 4)
    events = [
        ("logits", _t(0, 1)),  # clean pass in batches of 2
        ("logits", _t(2, 3)),
        ("logits", _t(0)),  # example 4 misclassified
        ("square", _t(0, 1)),
        ("logits", _t(0, 0)),  # breaks 1
        ("square", _t(2, 3)),
        ("logits", _t(1, 3)),  # breaks 2
    ]
    correct = np.array([True, False, False, True, False])
    stage = references._attribute(events, correct, y, clean_batches=3)
    assert stage.tolist() == ["", "square", "square", "", "clean"]


def test_replay_refuses_to_disagree_with_the_returned_labels():
    y = _t(0, 1)
    events = [("logits", _t(0, 1)), ("apgd-ce", _t(0, 1)), ("logits", _t(0, 0))]
    with pytest.raises(AssertionError, match="disagree"):
        references._attribute(events, np.array([True, True]), y, clean_batches=1)


@pytest.mark.slow
def test_original_autoattack_stages_on_a_weak_model():
    """A real run: the stages' counts add up to the examples it broke, and its verdicts hold."""
    pytest.importorskip("pyautoattack", reason="needs the bench extra: make bench-install")
    from bench import masked_models as mm

    xt, yt, x, y = mm.digits()
    torch.manual_seed(0)
    model = mm.fit(mm.DigitsCNN(), xt, yt, 3)
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = x[:40], y[:40]
    res = references.original_autoattack(model, x, y, 0.15, "standard", batch_size=16)
    assert sum(res.stage_broken.values()) == int((~res.correct).sum()) > 0
    assert set(res.stage_broken) <= {"clean", "apgd-ce", "apgd-t", "fab-t", "square"}
    assert float((res.x_adv - x).abs().amax()) <= 0.15 + 1e-6
    with torch.no_grad():
        broken = ~torch.as_tensor(res.correct)
        wrong = model(res.x_adv[broken]).argmax(1) != y[broken]
    assert bool(wrong.all())
