"""The detector plug-in contract (``poisoning.defense``).

A detector file (``runner/defenses/<kind>.py``, one catalog line in
:mod:`runner.catalog.defenses`) holds a subclass of :class:`Detector`. It imports no torch at
its top (``advrun validate`` loads the registry's names only; execution loads the class).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import Tensor

    from runner.spec.poisoning import PoisoningSpec


class Detector:
    """Flags suspected poisons per class from features of a model trained on the poisoned set.

    ``needs_features``: False for ``none`` (no model is trained for it, nothing is removed).
    ``paper``: the method's source, for the report and the model card.
    """

    needs_features: ClassVar[bool] = True
    paper: ClassVar[str] = ""

    def __init__(self, cfg: PoisoningSpec, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed

    def flag(self, features: Tensor, labels: Tensor, num_classes: int, expected: float) -> Tensor:
        """A boolean mask over the examples: True where suspected to be poisoned.

        ``features`` (N, D) on the device; ``labels`` (N,) the training labels (the poisons'
        labels as the attacker set them); ``expected``: the share of poisons expected per class
        when the spec gives none (the attack's real share of its target class).
        """
        import torch

        out = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
        for c in range(num_classes):
            idx = (labels == c).nonzero().flatten()
            if len(idx) >= 2:
                out[idx] = self.flag_class(features[idx], expected)
        return out

    def flag_class(self, features: Tensor, expected: float) -> Tensor:
        """The mask of one class's examples (override)."""
        raise NotImplementedError

    def removal_fraction(self, expected: float) -> float | None:
        """The share of each class it removes, for detectors that remove a fixed share."""
        return None
