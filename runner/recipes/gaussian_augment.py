"""``gaussian_augment``: Cohen, Rosenfeld & Kolter 2019, "Certified Adversarial Robustness via
Randomized Smoothing" (Section 4: training with Gaussian data augmentation).

Each batch is trained on x + N(0, sigma^2 I), one fresh noise draw per example and epoch, with the
correct labels, so that the base classifier learns to classify under the noise the smoothed
classifier adds at certification (``certify: {sigma: train}`` certifies at this sigma). As in the
paper and its certification, the noisy inputs are not clipped to the pixel range.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.recipes.base import Recipe
from runner.spec.base import FloatSweep
from runner.spec.recipes import Problem, RecipeBase, as_list

if TYPE_CHECKING:
    from torch import Tensor, nn


def check_sigma(sigma: Any, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
    """Every (swept) training noise level is > 0 and not wider than the pixel range."""
    lo, hi = spec.threat.pixel_range
    for s in as_list(sigma):
        if s <= 0:
            yield (*where, "sigma"), f"sigma {s:g} must be > 0 (the noise's standard deviation)"
        elif s > 4 * (hi - lo):
            yield (
                (*where, "sigma"),
                f"sigma {s:g} is more than 4x the width of pixel_range [{lo:g}, {hi:g}]: the "
                "noise would drown every image (the paper: 0.12 to 1.0 on [0, 1] images)",
            )


class GaussianAugmentRecipe(RecipeBase):
    """Cohen et al. 2019: train on Gaussian-noise-augmented inputs."""

    kind: Literal["gaussian_augment"] = Field(
        description="Cohen et al. 2019 Gaussian data augmentation (randomized smoothing)"
    )
    sigma: FloatSweep = Field(
        ...,
        description="standard deviation of the training noise in pixel units (the paper: 0.12, "
        "0.25, 0.5, 1.0 on [0, 1] images); a list sweeps",
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        yield from check_sigma(self.sigma, where, spec)


class GaussianAugmentTraining(Recipe):
    config = GaussianAugmentRecipe

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        import torch
        import torch.nn.functional as F

        noisy = x + torch.randn_like(x) * float(self.cfg.sigma)
        return F.cross_entropy(model(noisy), y)
