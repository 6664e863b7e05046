"""Learning-rate schedules per batch: epoch milestones (Rice et al.'s piecewise decay, TRADES'
single drop) and the cyclic schedule's peak (Wong et al.'s train_fgsm.py peaks at half)."""

from __future__ import annotations

import torch

from runner.spec.recipes import ScheduleSpec
from runner.train.optim import make_scheduler


def lrs(schedule: ScheduleSpec, epochs: int, steps_per_epoch: int) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = make_scheduler(opt, schedule, epochs * steps_per_epoch, epochs)
    out = []
    for _ in range(epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_milestone_epochs_decay_after_those_epochs() -> None:
    rice = lrs(ScheduleSpec(name="step", milestone_epochs=[100, 150]), 200, 3)
    per_epoch = [rice[3 * e : 3 * e + 3] for e in range(200)]
    assert all(lr == [0.1] * 3 for lr in per_epoch[:100])  # epochs 1-100
    assert all(abs(v - 0.01) < 1e-12 for lr in per_epoch[100:150] for v in lr)  # 101-150
    assert all(abs(v - 0.001) < 1e-12 for lr in per_epoch[150:] for v in lr)
    # the same as the fractions 0.5 and 0.75 of 200 epochs
    assert rice == lrs(ScheduleSpec(name="step", milestones=[0.5, 0.75]), 200, 3)
    trades = lrs(ScheduleSpec(name="step", milestone_epochs=[74]), 80, 2)
    assert trades[2 * 73 : 2 * 74] == [0.1, 0.1] and abs(trades[2 * 74] - 0.01) < 1e-12
    # a milestone past the last epoch (e.g. an epochs=1 smoke run) never applies
    assert lrs(ScheduleSpec(name="step", milestone_epochs=[100, 150]), 1, 5) == [0.1] * 5


def test_cyclic_peak() -> None:
    half = lrs(ScheduleSpec(name="cyclic", peak=0.5), 10, 10)
    default = lrs(ScheduleSpec(name="cyclic"), 10, 10)
    assert max(range(100), key=half.__getitem__) in (49, 50)
    assert max(range(100), key=default.__getitem__) in (39, 40)
    assert max(half) <= 0.1 and half[0] < 0.01 and half[-1] < 0.01
