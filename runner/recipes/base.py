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


@dataclass
class Batch:
    """One training batch as the native engine hands it from the recipe's :meth:`Recipe.craft`
    to its per-batch hooks and to :meth:`Recipe.loss`: the clean inputs and labels, the epoch
    progress, what the recipe crafted from them (``x_adv``, None when nothing was) and the input
    gradient it took on the way (``grad``; GradAlign's regulariser reuses it)."""

    x: Tensor
    y: Tensor
    progress: float
    x_adv: Tensor | None = None
    grad: Tensor | None = None


class Recipe:
    """Clean training by default; subclasses change the batch loss or the data.

    Per batch the native engine calls :meth:`craft` (the inner maximisation, model in train mode
    on entry), then the per-batch hooks' ``before_loss`` (e.g. AWP's weight perturbation, which
    evaluates :meth:`loss` on a proxy copy), then :meth:`loss`, and does the optimizer step. A
    recipe may instead override :meth:`batch_loss` alone (craft and loss in one; the default
    :meth:`loss` calls it), at the price of options that need the two apart (``awp``).
    ``art_epoch`` runs one epoch through ART's own trainer for the recipes that have one
    (``engine: art``).

    Class attributes: ``config`` the spec model; ``art_trainer`` the name of ART's trainer behind
    ``engine: art`` (None: native only); ``art_norms`` the threat norms that trainer attacks in;
    ``adversarial`` whether it crafts perturbations during training. ``replays`` (per instance):
    optimizer steps on each batch (Free-AT's m; 1 elsewhere).
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
        self.replays = 1

    # -- per-batch hooks -------------------------------------------------------------------
    def batch_hooks(self, model: nn.Module, steps_per_epoch: int) -> tuple[Any, ...]:
        """The per-batch hooks this recipe trains with (:class:`runner.train.state.BatchHook`):
        the weight average if ``ema`` is set; kinds add their own (AWP, Free-AT's carried
        perturbation) before it. Built once per run, after the model is on its device;
        ``steps_per_epoch``: optimizer steps per epoch of the loop."""
        if self.cfg.ema is None:
            return ()
        from runner.recipes.averaging import WeightAverage

        return (WeightAverage(model, self.cfg.ema, steps_per_epoch),)

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

    def craft(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Batch:
        """The batch's training inputs (e.g. adversarial examples); by default none: the clean
        batch, with :meth:`batch_loss` doing all."""
        return Batch(x, y, epoch_progress)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """The mean training loss of a crafted batch (called on the trained model, and by AWP on
        its proxy copy)."""
        return self.batch_loss(model, batch.x, batch.y, batch.progress)

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        """Craft and loss in one call (clean cross-entropy by default)."""
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

    def watches_fgsm(self) -> bool:
        """Whether validation measures FGSM accuracy too (a single-step recipe's guard)."""
        return False

    # -- engine: art -----------------------------------------------------------------------
    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int, scheduler) -> float:
        """One epoch through ART's own trainer; only recipes with an ART trainer override it.

        ``scheduler`` is advrun's per-batch learning-rate schedule over the classifier's
        optimizer. Returns the mean training loss, or NaN where ART does not report it.
        """
        raise NotImplementedError(f"recipe kind '{self.cfg.kind}' has no ART trainer")


class GuardedRecipe(Recipe):
    """A single-step recipe (spec: :class:`runner.spec.recipes.SingleStepRecipeBase`) with the
    catastrophic-overfitting guard: stop when validation PGD accuracy falls ``overfit_drop``
    below its best epoch, or when validation FGSM accuracy exceeds PGD accuracy by more than
    ``overfit_gap`` in an epoch; the loop then restores and evaluates the best epoch."""

    def watches_fgsm(self) -> bool:
        return self.cfg.watches_fgsm()

    def should_stop(self, history: list[dict[str, Any]]) -> str | None:
        return self._drop(history) or self._gap(history)

    def _gap(self, history: list[dict[str, Any]]) -> str | None:
        """Single-step overfitting (Kim et al. 2021): validation FGSM accuracy above PGD's by
        more than ``overfit_gap`` in the epoch."""
        if not self.watches_fgsm():
            return None
        gap = self.cfg.overfit_gap
        last = history[-1]
        fgsm, robust = last.get("val_fgsm", float("nan")), last["val_robust"]
        if not fgsm - robust > gap:  # NaN (no monitor) never fires
            return None
        reason = (
            f"catastrophic overfitting: validation FGSM accuracy {fgsm:.3f} exceeds PGD accuracy "
            f"{robust:.3f} by {fgsm - robust:.3f} at epoch {last['epoch']} (more than "
            f"overfit_gap {gap:g})"
        )
        return reason + self._never_robust(history, gap)

    def _never_robust(self, history: list[dict[str, Any]], gap: float) -> str:
        """What the diagnosis adds when the epoch to restore is no robust model either: every
        epoch showed the gap, or the best validation PGD accuracy is at most chance."""
        best = max(history, key=lambda r: r["val_robust"])
        chance = 1 / self.ctx.num_classes
        if all(r.get("val_fgsm", float("nan")) - r["val_robust"] > gap for r in history):
            why = "the gap exceeded overfit_gap from the first epoch"
        elif best["val_robust"] <= chance:
            why = (
                f"the best validation PGD accuracy, {best['val_robust']:.3f} (epoch "
                f"{best['epoch']}), is at most chance (1/{self.ctx.num_classes})"
            )
        else:
            return ""
        return f"; no epoch was ever robust ({why}): the epoch restored is not a robust model"

    def _drop(self, history: list[dict[str, Any]]) -> str | None:
        drop = self.cfg.overfit_drop
        robust = [r["val_robust"] for r in history]
        if drop is None or len(robust) < 2 or robust[-1] != robust[-1]:  # NaN: no monitor
            return None
        best = max(range(len(robust) - 1), key=lambda i: robust[i])
        if robust[-1] < robust[best] - drop:
            return (
                f"catastrophic overfitting: validation PGD accuracy fell from "
                f"{robust[best]:.3f} (epoch {history[best]['epoch']}) to {robust[-1]:.3f} at "
                f"epoch {history[-1]['epoch']} (more than overfit_drop {drop:g})"
            )
        return None


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
