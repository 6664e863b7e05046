"""The recipe plug-in contract: what a recipe adds to the shared training loop.

A recipe file (``runner/recipes/<kind>.py``, registered by one line in
:mod:`runner.catalog.recipes`) holds the kind's spec model (a subclass of one of the bases in
:mod:`runner.spec.recipes`, with ``kind: Literal["<kind>"]`` and its own checks as methods) and
a subclass of :class:`Recipe` naming it as ``config``. The module imports no torch at its top
(``advrun validate`` loads it for its spec model); methods import what they need.

Attacks inside training run on the device, in eval mode (dropout and batch-norm statistics
frozen), with gradients taken w.r.t. the input only; the weights' ``requires_grad`` is switched
off meanwhile so the forward passes of the attack record nothing the update does not need.
Every step projects the perturbation into the eps ball and the pixel range.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from runner.compile import Threat
    from runner.passes import PassCounter
    from runner.spec.poisoning import PoisoningSpec
    from runner.spec.recipes import RecipeBase

    LossFn = Callable[[Tensor, Tensor], Tensor]  # (logits, target) -> summed loss


@dataclass
class TrainContext:
    device: torch.device
    pixel_range: tuple[float, float]
    threat: Threat
    num_classes: int
    input_shape: tuple[int, ...]
    counter: PassCounter | None = None
    poisoning: PoisoningSpec | None = None  # the spec's poisoning block, for its trigger
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None  # data.augment, per batch


def ce_sum(logits: Tensor, y: Tensor) -> Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(logits, y, reduction="sum")


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen weights for the duration of an inner attack; restored after."""
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)


class Recipe:
    """Clean training by default; subclasses change the batch loss or the data.

    ``batch_loss`` is called with the model in train mode and returns the mean loss of the batch;
    the loop does the optimizer step. ``art_epoch`` runs one epoch through ART's own trainer for
    the recipes that have one (``engine: art``).

    Class attributes: ``config`` the spec model; ``art_trainer`` the name of ART's trainer behind
    ``engine: art`` (None: native only); ``art_norms`` the threat norms that trainer attacks in;
    ``adversarial`` whether it crafts perturbations during training.
    """

    config: ClassVar[type[RecipeBase]]
    art_trainer: ClassVar[str | None] = None
    art_norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    adversarial: ClassVar[bool] = False

    def __init__(self, cfg: RecipeBase, ctx: TrainContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.norm: str = ctx.threat.norm
        self.lo, self.hi = (float(v) for v in ctx.pixel_range)

    # -- data ------------------------------------------------------------------------------
    def training_data(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The training set this recipe trains on (e.g. plus trigger-stamped copies)."""
        return x, y

    # -- per batch -------------------------------------------------------------------------
    def eps_at(self, epoch_progress: float) -> float:
        """The training eps after ``epoch_progress`` epochs, with linear warm-up."""
        eps = float(getattr(self.cfg, "eps", None) or 0.0)  # clean recipes have no eps
        warm = getattr(self.cfg, "eps_warmup_epochs", 0)
        return eps * min(1.0, epoch_progress / warm) if warm else eps

    def scaled(self, key: str, eps: float) -> float:
        """A step size given relative to the recipe eps, scaled with eps during warm-up."""
        full = float(self.cfg.eps)
        return float(getattr(self.cfg, key)) * (eps / full) if full else 0.0

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(model(x), y)

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        target: Tensor,
        eps: float,
        step_size: float,
        steps: int,
        start: str = "uniform",
        loss_fn: LossFn = ce_sum,
    ) -> Tensor:
        """Maximise ``loss_fn(model(x + delta), target)`` over the eps ball by projected steps.

        ``start``: ``uniform`` (a uniform point in the ball), ``gaussian`` (x + 0.001 N(0, 1), as
        in the TRADES and MART papers) or ``none`` (x itself).
        """
        import torch

        from runner.attacks import native

        x = x.detach()
        if eps <= 0 or steps <= 0:
            return x
        lo, hi, norm = self.lo, self.hi, self.norm
        if start == "uniform":
            delta = native.random_start(x, eps, norm, lo, hi)
        elif start == "gaussian":
            delta = native.project(x, 0.001 * torch.randn_like(x), eps, norm, lo, hi)
        else:
            delta = torch.zeros_like(x)
        with attack_mode(model):
            for _ in range(steps):
                delta.requires_grad_(True)
                loss = loss_fn(model(x + delta), target)
                (grad,) = torch.autograd.grad(loss, delta)
                with torch.no_grad():
                    if norm == "linf":
                        step = grad.sign_().mul_(step_size)
                    else:
                        g = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
                        step = grad / g.view(-1, *([1] * (x.dim() - 1))) * step_size
                    delta = native.project(x, delta.detach() + step, eps, norm, lo, hi)
        return (x + delta).detach()

    # -- per epoch -------------------------------------------------------------------------
    def should_stop(self, history: list[dict[str, Any]]) -> str | None:
        """A reason to stop training early (e.g. catastrophic overfitting), or None."""
        return None

    # -- engine: art -----------------------------------------------------------------------
    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int, scheduler) -> float:
        """One epoch through ART's own trainer; only recipes with an ART trainer override it.

        ``scheduler`` is advrun's per-batch learning-rate schedule over the classifier's
        optimizer. Returns the mean training loss, or NaN where ART does not report it.
        """
        raise NotImplementedError(f"recipe kind '{self.cfg.kind}' has no ART trainer")


def art_batches(n: int, batch_size: int) -> Iterator:
    """Index batches of a shuffled epoch, drawn from NumPy's global stream as ART's fit does."""
    import numpy as np

    ind = np.random.permutation(n)
    for b in range(math.ceil(n / batch_size)):
        yield ind[b * batch_size : (b + 1) * batch_size]


def one_hot(y: Tensor, num_classes: int):
    """Labels as a one-hot float32 NumPy array (ART's FBF and TRADES batch steps need them)."""
    import torch.nn.functional as F

    return F.one_hot(y, num_classes).float().cpu().numpy()
