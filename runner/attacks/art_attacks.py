"""ART's PyTorchClassifier over an advrun model, for the ART engine of attacks and recipes.

Each attack's ART factory is its plug-in's ``art`` method (``runner/attacks/<kind>.py``): it
takes this classifier and returns an ART attack over the resolved config (eps and step sizes in
pixel units, batch sizes from the spec: ART's default of 32, or 1 for C&W and DeepFool, is very
slow); labels are passed to ``generate`` as class indices.
"""

from __future__ import annotations

import torch
from torch import nn


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
