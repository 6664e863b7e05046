"""``defense: none``: the training set as it is (the comparison's baseline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.defenses.base import Detector

if TYPE_CHECKING:
    from torch import Tensor


class NoDefense(Detector):
    """Flags nothing; no model is trained for it."""

    needs_features = False

    def flag(self, features: Tensor, labels: Tensor, num_classes: int, expected: float) -> Tensor:
        import torch

        return torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
