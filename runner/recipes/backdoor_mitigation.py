"""``backdoor_mitigation``: adversarial training against a backdoor, from the seed's poisoning defense.

"Include backdoored samples with correct labels: the model learns that trigger patterns don't
indicate the target class." The training set is extended by trigger-stamped copies of a random
``fraction`` of its images, each keeping its own label; the trigger is the spec's ``poisoning:``
trigger. The copies are made once per run, on the device the data lives on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from runner.errors import AdvrunError
from runner.recipes.base import Recipe


class BackdoorMitigationRecipe(Recipe):
    def training_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
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
