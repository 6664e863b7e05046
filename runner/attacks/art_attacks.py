"""ART's evasion attacks over a PyTorchClassifier: the reference definitions.

Each factory takes the classifier and a resolved attack config (eps and step sizes in pixel
units) and returns an ART attack; labels are passed to ``generate`` as class indices. Batch sizes
come from the spec (ART's default of 32, or 1 for C&W and DeepFool, is very slow).
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


def fgsm(classifier, cfg: Any):
    from art.attacks.evasion import FastGradientMethod

    return FastGradientMethod(
        classifier, norm=_NORMS[cfg.norm], eps=cfg.eps, batch_size=cfg.batch_size
    )


def pgd(classifier, cfg: Any):
    from art.attacks.evasion import ProjectedGradientDescent

    return ProjectedGradientDescent(
        classifier,
        norm=_NORMS[cfg.norm],
        eps=cfg.eps,
        eps_step=cfg.step_size,
        max_iter=cfg.steps,
        num_random_init=cfg.restarts if cfg.random_start else 0,
        batch_size=cfg.batch_size,
        verbose=False,
    )


def apgd(classifier, cfg: Any):
    """AutoProjectedGradientDescent; initial step 2*eps as in Croce & Hein 2020."""
    from art.attacks.evasion import AutoProjectedGradientDescent

    return AutoProjectedGradientDescent(
        classifier,
        norm=_NORMS[cfg.norm],
        eps=cfg.eps,
        eps_step=2 * cfg.eps,
        max_iter=cfg.steps,
        targeted=bool(cfg.targeted),
        nb_random_init=cfg.restarts,
        batch_size=cfg.batch_size,
        loss_type="cross_entropy" if cfg.loss == "ce" else "difference_logits_ratio",
        verbose=False,
    )


def cw_l2(classifier, cfg: Any):
    from art.attacks.evasion import CarliniL2Method

    return CarliniL2Method(
        classifier,
        confidence=cfg.confidence,
        learning_rate=cfg.learning_rate,
        binary_search_steps=cfg.binary_search_steps,
        max_iter=cfg.steps,
        initial_const=cfg.initial_const,
        batch_size=cfg.batch_size,
        verbose=False,
    )


def cw_linf(classifier, cfg: Any):
    from art.attacks.evasion import CarliniLInfMethod

    return CarliniLInfMethod(
        classifier,
        confidence=cfg.confidence,
        learning_rate=cfg.learning_rate,
        max_iter=cfg.steps,
        initial_const=cfg.initial_const,
        largest_const=cfg.largest_const,
        decrease_factor=cfg.decrease_factor,
        batch_size=cfg.batch_size,
        verbose=False,
    )


def square(classifier, cfg: Any):
    from art.attacks.evasion import SquareAttack

    return SquareAttack(
        classifier,
        norm=_NORMS[cfg.norm],
        eps=cfg.eps,
        max_iter=cfg.queries,
        p_init=cfg.p_init,
        nb_restarts=cfg.restarts,
        batch_size=cfg.batch_size,
        verbose=False,
    )


def deepfool(classifier, cfg: Any):
    from art.attacks.evasion import DeepFool

    return DeepFool(
        classifier,
        max_iter=cfg.steps,
        epsilon=cfg.overshoot,
        nb_grads=cfg.n_grads,
        batch_size=cfg.batch_size,
        verbose=False,
    )


def autoattack(classifier, cfg: Any):
    """ART's own AutoAttack composition: APGD-CE and APGD-DLR (100 steps, 5 restarts), DeepFool,
    Square (5000 queries, 5 restarts); not the standard Croce & Hein 2020 composition."""
    from art.attacks.evasion import AutoAttack

    attack = AutoAttack(
        classifier,
        norm=_NORMS[cfg.norm],
        eps=cfg.eps,
        eps_step=2 * cfg.eps,
        batch_size=cfg.batch_size,
    )
    for sub in attack.attacks:  # its defaults print progress bars
        sub.verbose = False
    return attack
