"""The clean-label backdoor (Turner, Tsipras & Madry 2019, Label-Consistent Backdoor Attacks).

The attacker picks ``round(fraction x N)`` training images of the target class (seeded, without
replacement), keeps their correct label, perturbs each with untargeted PGD on a proxy model
trained on the clean training set (so its content points away from its class and the model has
to rely on something else to fit it) and stamps the trigger on the result. A model that learns
those images learns the trigger as a feature of the target class.

``engine: native`` runs advrun's PGD on the device; ``engine: art`` runs the PGD and the stamping
of ART's ``PoisoningAttackCleanLabelBackdoor`` (its ``attack`` and ``backdoor``) on the same
images. ART's own ``poison()`` is not called: it draws the images with replacement
(``np.random.choice``), so some are perturbed twice and fewer than asked are poisoned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from runner.errors import AdvrunError
from runner.poisoning import check_fits, stamp, trigger

if TYPE_CHECKING:
    from torch import Tensor, nn

    from runner.compile import Run


@dataclass(frozen=True)
class Perturbation:
    """The PGD that makes the poisons hard to learn, in pixel units."""

    eps: float
    step_size: float
    steps: int
    norm: str
    random_start: bool


def perturbation(run: Run) -> Perturbation:
    """The named pgd attack's settings, or PGD at the threat eps (10 steps of eps/4, no random
    start, as ART's attack with num_random_init=0)."""
    p = run.poisoning
    if p is not None and p.perturbation is not None:
        a = next(a for a in run.attacks if a.name == p.perturbation)
        return Perturbation(float(a.eps), float(a.step_size), int(a.steps), str(a.norm),
                            bool(a.random_start))  # type: ignore[attr-defined]  # fmt: skip
    eps = float(run.threat.eps)
    return Perturbation(eps, eps / 4, 10, run.threat.norm, False)


def select(y: Tensor, run: Run, num_classes: int, shape: tuple[int, ...]) -> np.ndarray:
    """Indices of the target-class images to poison (sorted; seeded by poisoning.seed)."""
    cfg = run.poisoning
    assert cfg is not None
    check_fits(cfg, shape, num_classes)
    candidates = np.flatnonzero(y.cpu().numpy() == int(cfg.target))
    n = int(round(cfg.fraction * len(y)))
    if n < 1 or n > len(candidates):
        raise AdvrunError(
            f"poisoning.fraction {cfg.fraction:g} asks for {n} clean-label poisons, but the "
            f"training set has {len(candidates)} images of the target class {cfg.target}; "
            "a clean-label poison keeps its label, so lower the fraction"
        )
    return np.sort(np.random.default_rng(cfg.seed).choice(candidates, size=n, replace=False))


def craft(proxy: nn.Module, x: Tensor, y: Tensor, run: Run, batch_size: int = 256) -> Tensor:
    """The poisons of (x, y): PGD on ``proxy`` away from the true labels, then the trigger."""
    cfg, (lo, hi) = run.poisoning, run.threat.pixel_range
    assert cfg is not None
    pert = perturbation(run)
    device = next(proxy.parameters()).device
    proxy.eval()
    if cfg.engine == "art":
        return _craft_art(proxy, x, y, run, pert)
    from runner.attacks import native

    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        adv = native.pgd(proxy, xb, yb, pert.eps, pert.step_size, pert.steps, pert.norm, lo, hi,
                         pert.random_start)  # fmt: skip
        out.append(stamp(adv, cfg, (lo, hi)))
    return torch.cat(out).to(x.device)


def _craft_art(proxy: nn.Module, x: Tensor, y: Tensor, run: Run, pert: Perturbation) -> Tensor:
    """ART's clean-label attack's PGD and backdoor on exactly these images."""
    from art.attacks.poisoning import PoisoningAttackBackdoor, PoisoningAttackCleanLabelBackdoor

    from runner.attacks.art_attacks import make_classifier

    cfg = run.poisoning
    assert cfg is not None
    device = next(proxy.parameters()).device
    classes = int(proxy(x[:1].to(device)).shape[1])
    clf = make_classifier(proxy, tuple(x.shape[1:]), classes, run.threat.pixel_range, device)
    target = np.eye(classes, dtype=np.float32)[int(cfg.target)]
    attack = PoisoningAttackCleanLabelBackdoor(
        PoisoningAttackBackdoor(trigger(cfg, run.threat.pixel_range)), clf, target,
        pp_poison=float(cfg.fraction),  # only poison() reads it, and the images are chosen here
        norm=np.inf if pert.norm == "linf" else 2, eps=pert.eps,
        eps_step=pert.step_size, max_iter=pert.steps,
        num_random_init=1 if pert.random_start else 0,
    )  # fmt: skip
    attack.attack.set_params(verbose=False)  # no progress bar of ART's in advrun's output
    labels = np.eye(classes, dtype=np.float32)[y.cpu().numpy()]
    perturbed = attack.attack.generate(x.cpu().numpy(), y=labels)
    stamped, _ = attack.backdoor.poison(perturbed, target, broadcast=True)
    return torch.as_tensor(stamped, dtype=x.dtype).to(x.device)
