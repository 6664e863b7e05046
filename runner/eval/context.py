"""What one evaluation works on, passed whole to every phase (suite, curves, checklist).

An :class:`EvalContext` holds the model and its test examples, the threat model, the attacks of
the suite, the ``eval`` settings, where progress is logged and kept (the resumable evaluation
checkpoint), and the base seed; it hands out the phases' seeded generators, logits, attacks and
ART classifier, so no phase takes a dozen positional arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from runner.attacks.runner import generate
from runner.device import generator
from runner.eval.common import logits_of

if TYPE_CHECKING:
    from runner.compile import Threat
    from runner.eval.resume import EvalCheckpoint
    from runner.spec.attacks import AttackBase
    from runner.spec.core import EvalSpec


@dataclass(frozen=True)
class EvalContext:
    """One model's evaluation.

    ``x``/``y``: the test examples (on the model's device); ``settings``: the run's ``eval``
    section (batch size, suite mode, bootstrap, curves, checklist); ``attacks``: the suite as the
    spec lists it; ``checkpoint``: where finished phases are kept for a rerun after a kill
    (None: nothing kept); ``seed``: the base of every phase's seeds.
    """

    model: nn.Module
    x: Tensor
    y: Tensor
    threat: Threat
    num_classes: int
    settings: EvalSpec
    attacks: Sequence[AttackBase] = ()
    log: Callable[[str], None] = print
    checkpoint: EvalCheckpoint | None = None
    seed: int = 0

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    @property
    def pixel_range(self) -> tuple[float, float]:
        return self.threat.pixel_range

    @property
    def device(self) -> torch.device:
        return self.x.device

    def first(self, n: int) -> EvalContext:
        """The same evaluation on the first ``n`` examples."""
        return dataclasses.replace(self, x=self.x[:n], y=self.y[:n])

    def generator(self, offset: int) -> torch.Generator:
        """The stream of the phase or attack at ``offset`` from the base seed, on the device."""
        return generator(self.seed + offset, self.device)

    def logits(self, x: Tensor) -> Tensor:
        """The model's logits for ``x`` in batches (no gradient)."""
        return logits_of(self.model, x, self.batch_size)

    def accuracy(self, x: Tensor, y: Tensor) -> float:
        return float((self.logits(x).argmax(1) == y).float().mean())

    def art_classifier(self, attacks: Sequence[AttackBase]):
        """ART's classifier over the model, if any of ``attacks`` runs on ART (else None)."""
        if not any(a.engine == "art" for a in attacks):
            return None
        from runner.attacks.art_attacks import make_classifier

        shape = tuple(self.x.shape[1:])
        return make_classifier(self.model, shape, self.num_classes, self.pixel_range, self.device)

    def attack(
        self,
        cfg: AttackBase,
        x: Tensor,
        y: Tensor,
        classifier=None,
        gen: torch.Generator | None = None,
    ) -> Tensor:
        """Adversarial examples for (x, y) under ``cfg`` (:func:`runner.attacks.runner.generate`)."""
        return generate(self.model, x, y, cfg, self.pixel_range, self.num_classes, classifier, gen)
