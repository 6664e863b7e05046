"""An exponential moving average of the weights (``ema:``, Gowal et al. 2020, Rebuffi et al.
2021), an option of every recipe: a per-batch hook (:class:`runner.train.state.BatchHook`) whose
average is the model that validation, the checkpoints and the evaluation use. It imports nothing of
the recipes (their base class builds it), so that no import cycle runs through them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import Tensor, nn

    from runner.spec.recipes import EMASpec


class WeightAverage:
    """EMA: an exponential moving average of the weights, updated after every optimizer step.

    The average is a :class:`torch.optim.swa_utils.AveragedModel` (a copy of the model) with a
    per-step decay: 0 (a copy of the weights) during the first ``warmup`` epochs, then ``decay``,
    or with ``ramp`` min(decay, (1 + t) / (10 + t)) at the t-th step after the warm-up, as
    DeepMind's ``ema_update`` for Gowal et al. 2020 and Rebuffi et al. 2021. BatchNorm statistics
    and other buffers: ``copy`` takes the trained model's after every step (their code averages
    the parameters only and evaluates with the trained model's statistics); ``average`` averages
    the floating-point buffers too. The average and the step count join the resume point, so a
    resumed run continues the same average.
    """

    key = "ema"

    def __init__(self, model: nn.Module, cfg: EMASpec, steps_per_epoch: int) -> None:
        from torch.optim.swa_utils import AveragedModel

        self.cfg = cfg
        self.warmup_steps = round(float(cfg.warmup) * steps_per_epoch)
        self.steps = 0  # optimizer steps seen
        self.average = AveragedModel(
            model, multi_avg_fn=self._blend, use_buffers=cfg.buffers == "average"
        )

    def averaged(self) -> nn.Module:
        """The model validation, the checkpoints and the evaluation use."""
        return self.average.module

    def decay_at(self, step: int) -> float:
        """The decay of the update after optimizer step ``step`` (0-based)."""
        t = step - self.warmup_steps
        if t < 0:
            return 0.0
        decay = float(self.cfg.decay)
        return min(decay, (1.0 + t) / (10.0 + t)) if self.cfg.ramp else decay

    def before_loss(self, model: nn.Module, batch: Any) -> None:  # a recipe's Batch, unused
        return None

    def before_step(self, model: nn.Module) -> None:
        return None

    def after_step(self, model: nn.Module) -> None:
        self.average.update_parameters(model)  # the first call copies the weights
        if self.cfg.buffers == "copy":
            with torch.no_grad():
                for mine, theirs in zip(self.average.module.buffers(), model.buffers(),
                                        strict=True):  # fmt: skip
                    mine.copy_(theirs)
        self.steps += 1

    @torch.no_grad()
    def _blend(self, averaged: list[Tensor], current: list[Tensor], _n: Tensor) -> None:
        decay = self.decay_at(self.steps)  # a Python count: no device sync per step
        for a, c in zip(averaged, current, strict=True):
            if decay == 0.0 or not torch.is_floating_point(a):  # e.g. num_batches_tracked
                a.copy_(c)
            else:
                a.lerp_(c, 1.0 - decay)

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state["average"])
        self.steps = int(state["steps"])
