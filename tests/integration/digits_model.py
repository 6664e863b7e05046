"""A standard-trained small CNN on digits, trained once per test session and shared."""

from __future__ import annotations

import functools

import torch

from runner.execute.prepare import Prepared, prepare
from runner.models import build_model
from runner.spec.core import DataSpec

CPU = torch.device("cpu")
DATA = DataSpec(dataset="digits", val_fraction=0.1, test_fraction=0.2, split_seed=0)


@functools.cache
def trained() -> tuple[torch.nn.Module, Prepared]:
    """The small CNN after 8 epochs of Adam on digits (~97% clean) and its split; do not mutate."""
    data = prepare(DATA, (0.0, 1.0), CPU)
    torch.manual_seed(0)
    model = build_model("small_cnn", data.input_shape, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(8):
        perm = torch.randperm(len(data.x_train))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(data.x_train[b]), data.y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), data
