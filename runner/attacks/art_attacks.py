"""ART's evasion attacks over a PyTorchClassifier: the reference definitions.

Each factory takes the classifier and a resolved attack config (eps and step sizes in pixel
units) and returns an ART attack; labels are passed to ``generate`` as class indices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

_NORMS = {"linf": np.inf, "l2": 2}


def make_classifier(
    model: nn.Module,
    input_shape: tuple[int, ...],
    num_classes: int,
    pixel_range: tuple[float, float],
    device: torch.device,
    batch_size: int = 512,
):
    """ART's PyTorchClassifier with clip_values in pixel space (no preprocessing)."""
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(input_shape),
        nb_classes=num_classes,
        clip_values=(float(pixel_range[0]), float(pixel_range[1])),
        device_type="gpu" if device.type == "cuda" else "cpu",
    )
    clf._advrun_batch_size = batch_size  # noqa: SLF001 - ART's predict default of 128 is slow
    return clf


def fgsm(classifier, cfg: dict[str, Any]):
    from art.attacks.evasion import FastGradientMethod

    return FastGradientMethod(
        classifier, norm=_NORMS[cfg["norm"]], eps=cfg["eps"], batch_size=cfg["batch_size"]
    )


def pgd(classifier, cfg: dict[str, Any]):
    from art.attacks.evasion import ProjectedGradientDescent

    return ProjectedGradientDescent(
        classifier,
        norm=_NORMS[cfg["norm"]],
        eps=cfg["eps"],
        eps_step=cfg["step_size"],
        max_iter=cfg["steps"],
        num_random_init=cfg["restarts"] if cfg.get("random_start", True) else 0,
        batch_size=cfg["batch_size"],
        verbose=False,
    )
