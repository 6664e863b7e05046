"""The recipe interface: what a recipe adds to the shared training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from runner.attacks import native
from runner.train.counter import PassCounter


@dataclass
class TrainContext:
    device: torch.device
    pixel_range: tuple[float, float]
    threat: dict[str, Any]
    num_classes: int
    input_shape: tuple[int, ...]
    counter: PassCounter | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. the poisoning trigger


class Recipe:
    """Clean training by default; subclasses change the batch loss or the data.

    ``batch_loss`` is called with the model in train mode and returns the mean loss of the batch;
    the loop does the optimizer step. Attacks inside it go through :meth:`perturb`, which switches
    the model to eval mode and back.
    """

    adversarial = False

    def __init__(self, cfg: dict[str, Any], ctx: TrainContext) -> None:
        self.cfg = cfg
        self.ctx = ctx

    # -- data ------------------------------------------------------------------------------
    def training_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The training set this recipe trains on (e.g. plus trigger-stamped copies)."""
        return x, y

    # -- per batch -------------------------------------------------------------------------
    def eps_at(self, epoch_progress: float) -> float:
        """The training eps after ``epoch_progress`` epochs, with linear warm-up."""
        eps = float(self.cfg.get("eps") or 0.0)
        warm = self.cfg.get("eps_warmup_epochs", 0)
        return eps * min(1.0, epoch_progress / warm) if warm else eps

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        return nn.functional.cross_entropy(model(x), y)

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: float,
        step_size: float,
        steps: int,
        rand_init: bool = True,
        loss_fn=None,
    ) -> Tensor:
        """PGD in eval mode (dropout/batch-norm statistics frozen), then back to train mode."""
        was_training = model.training
        model.eval()
        try:
            lo, hi = self.ctx.pixel_range
            return native.pgd(
                model,
                x,
                y,
                eps,
                step_size,
                steps,
                self.ctx.threat["norm"],
                lo,
                hi,
                rand_init,
                loss_fn=loss_fn,
            )
        finally:
            model.train(was_training)

    # -- per epoch -------------------------------------------------------------------------
    def should_stop(self, history: list[dict[str, Any]]) -> str | None:
        """A reason to stop training early (e.g. catastrophic overfitting), or None."""
        return None

    # -- engine: art -----------------------------------------------------------------------
    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int) -> float:
        """One epoch through ART's own trainer; only recipes with an ART trainer override it."""
        raise NotImplementedError(f"recipe kind '{self.cfg['kind']}' has no ART trainer")
