"""``fgsm_rs``: Wong, Rice & Kolter 2020, "Fast is better than free: revisiting adversarial training".

One FGSM step of size ``alpha`` (1.25*eps by default) from a uniform random point in the ball,
projected back into the ball, then a training step on that example; the learning rate is cyclic
by default. Fast adversarial training can overfit catastrophically: PGD accuracy collapses within
an epoch while FGSM accuracy soars. The guard watches validation PGD accuracy each epoch and
stops when it falls ``overfit_drop`` below its best; the best epoch's checkpoint is evaluated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner import expr
from runner.recipes.base import Recipe, art_batches, one_hot
from runner.spec.base import Expr
from runner.spec.recipes import AdversarialRecipeBase, Problem, ScheduleSpec

if TYPE_CHECKING:
    from torch import Tensor, nn


class FGSMRSRecipe(AdversarialRecipeBase):
    """Wong, Rice & Kolter 2020 ("fast is better than free"): FGSM from a random start."""

    kind: Literal["fgsm_rs"] = Field(description="FGSM from a uniform random start (fast AT)")
    alpha: Expr = Field(
        "1.25*eps",
        description="FGSM step from the random start; 'eps' is this recipe's eps (the paper's "
        "1.25*eps is larger than eps on purpose)",
    )
    schedule: ScheduleSpec = Field(
        default_factory=lambda: ScheduleSpec(name="cyclic"),
        description="learning-rate schedule (default cyclic, as in the paper)",
    )
    overfit_drop: float | None = Field(
        0.2,
        gt=0,
        le=1,
        description="catastrophic-overfitting guard: stop and restore the best epoch when "
        "validation PGD accuracy falls this far below its best (null: off)",
    )

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        guarded = self.overfit_drop is not None
        if guarded and (self.monitor.n == 0 or spec.data.val_fraction == 0):
            yield (
                (*where, "overfit_drop"),
                (
                    "the catastrophic-overfitting guard watches validation PGD accuracy, but "
                    "validation is off (monitor.n or data.val_fraction is 0); turn it on or set "
                    "overfit_drop: null"
                ),
            )

    def check_at_eps(self, eps: float, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        # no step <= eps rule here: the paper's step is 1.25*eps, clipped back into the ball
        alpha = expr.evaluate(self.alpha, eps)
        if not 0 < alpha <= 2 * eps:
            yield (
                (*where, "alpha"),
                (
                    f"alpha {alpha:g} must be in (0, 2*eps] = (0, {2 * eps:g}]: beyond 2*eps every "
                    "step lands on a corner of the ball whatever the start (the paper uses 1.25*eps)"
                ),
            )
        elif self.engine == "art" and abs(alpha - 1.25 * eps) > 1e-9 * max(1.0, eps):
            yield (
                (*where, "alpha"),
                (
                    f"alpha {alpha:g}: ART's AdversarialTrainerFBFPyTorch hard-codes a step of "
                    f"1.25*eps = {1.25 * eps:g}; use alpha: 1.25*eps or engine: native"
                ),
            )


class FGSMRSTraining(Recipe):
    config = FGSMRSRecipe
    art_trainer = "AdversarialTrainerFBFPyTorch"
    art_norms = ("linf",)
    adversarial = True

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        import torch.nn.functional as F

        eps = self.eps_at(epoch_progress)
        x_adv = self.perturb(model, x, y, eps, self.scaled("alpha", eps), 1, start="uniform")
        return F.cross_entropy(model(x_adv), y)

    def should_stop(self, history: list[dict[str, Any]]) -> str | None:
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

    def art_epoch(self, classifier, x: Tensor, y: Tensor, epoch: int, scheduler) -> float:
        """One epoch of ART's AdversarialTrainerFBFPyTorch, batch by batch.

        ART's ``fit`` hard-codes a cyclic learning rate peaking at 0.21 over its own
        ``nb_epochs`` (Adam diverges under it), so advrun drives ART's per-batch FBF step,
        ``_batch_process`` (random start, 1.25*eps FGSM step, gradient-norm clipping at 0.5,
        optimizer step), with the spec's schedule. That step reads one-hot labels.
        """
        from art.defences.trainer import AdversarialTrainerFBFPyTorch

        trainer = self.__dict__.get("_art_trainer")
        if trainer is None:
            trainer = self._art_trainer = AdversarialTrainerFBFPyTorch(
                classifier, eps=self.cfg.eps, use_amp=False
            )
        xs, ys = x.cpu().numpy(), one_hot(y, self.ctx.num_classes)
        loss_sum, n = 0.0, 0
        for idx in art_batches(len(xs), self.cfg.batch_size):
            lr = scheduler.get_last_lr()[0]
            batch_loss, _, count = trainer._batch_process(xs[idx], ys[idx], lr)  # noqa: SLF001
            loss_sum, n = loss_sum + batch_loss, n + count
            scheduler.step()
        return loss_sum / max(1, n)
