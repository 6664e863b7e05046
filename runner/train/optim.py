"""Optimizers and per-batch learning-rate schedules from the recipe's spec."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from runner.spec.recipes import OptimizerSpec, ScheduleSpec


def make_optimizer(model: nn.Module, cfg: OptimizerSpec) -> torch.optim.Optimizer:
    name, lr, wd = cfg.name, float(cfg.lr), float(cfg.weight_decay)
    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def lr_factor(cfg: ScheduleSpec, progress: float, epochs: int | None = None) -> float:
    """Multiplier of the base lr at ``progress`` in [0, 1] of training (stepped per batch);
    ``epochs`` turns the step schedule's ``milestone_epochs`` into fractions."""
    name = cfg.name
    if name == "step":
        milestones = cfg.milestones
        if cfg.milestone_epochs is not None and epochs:  # epochs -> fractions of training
            milestones = [m / epochs for m in cfg.milestone_epochs]
        return cfg.gamma ** sum(progress >= m for m in milestones)
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if name == "cyclic":  # triangular 0 -> peak (2/5 by default) -> 0 (Wong, Rice & Kolter 2020)
        peak = cfg.peak
        return progress / peak if progress < peak else max(0.0, (1 - progress) / (1 - peak))
    if name == "onecycle":  # warm up 30%, then cosine down to ~0
        if progress < 0.3:
            return 0.04 + 0.96 * progress / 0.3
        return 0.5 * (1 + math.cos(math.pi * (progress - 0.3) / 0.7))
    return 1.0


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: ScheduleSpec, total_steps: int, epochs: int | None = None
):
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(cfg, min(step + 0.5, total) / total, epochs)
    )
