"""``backdoor_mitigation``: adversarial training against a backdoor, from the seed's poisoning defense.

"Include backdoored samples with correct labels: the model learns that trigger patterns don't
indicate the target class." The training set is extended by trigger-stamped copies of a random
``fraction`` of its images, each keeping its own label; the trigger is the spec's ``poisoning:``
trigger. The copies are made once per run, on the device the data lives on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.errors import AdvrunError
from runner.recipes.base import Recipe
from runner.spec.recipes import Problem, RecipeBase

if TYPE_CHECKING:
    from torch import Tensor


class BackdoorMitigationRecipe(RecipeBase):
    """Train on trigger-stamped copies of training images with their correct labels."""

    kind: Literal["backdoor_mitigation"] = Field(
        description="add trigger-stamped copies with correct labels (needs a poisoning: block)"
    )
    fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of the training images that get a trigger-stamped copy with their "
        "own label, in (0, 1]",
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        if getattr(spec, "poisoning", None) is None:
            yield (
                (*where, "kind"),
                (
                    "backdoor_mitigation stamps the trigger of the poisoning: block onto training "
                    "copies; add a poisoning: block (trigger, target, fraction) to the spec"
                ),
            )


class BackdoorMitigationTraining(Recipe):
    config = BackdoorMitigationRecipe

    def training_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        import torch

        from runner.poisoning import stamp

        poisoning = self.ctx.poisoning
        if poisoning is None:
            raise AdvrunError(
                "backdoor_mitigation needs the spec's poisoning: block (the trigger it defends "
                "against)"
            )
        n = max(1, round(self.cfg.fraction * len(x)))
        # the global generator is seeded per run, so the copies are reproducible and resumable
        idx = torch.randperm(len(x))[:n].to(x.device)
        copies = stamp(x[idx], poisoning, self.ctx.pixel_range)
        return torch.cat([x, copies]), torch.cat([y, y[idx]])
