"""The engines that train one epoch: advrun's own (``engine: native``) and ART's trainers
(``engine: art``). The loop (:mod:`runner.train.loop`) picks one by the recipe's ``engine``.

An engine's ``run_epoch(epoch, generator)`` trains one epoch in place and returns its mean loss,
or raises :class:`~runner.errors.RunFailed` when training diverged. The native engine's unit is
:meth:`NativeEngine.train_batch` (one optimizer step on one batch, with the state's per-batch
hooks around it), which a replaying recipe can repeat on the same batch.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from runner.errors import RunFailed

if TYPE_CHECKING:
    from runner.train.context import FitContext
    from runner.train.state import TrainingState


class Engine(Protocol):
    def run_epoch(self, epoch: int, gen: torch.Generator) -> float: ...


class NativeEngine:
    """The recipe's batch loss over a seeded permutation of the training set.

    Batch losses stay on the device until the epoch ends (one sync per epoch, not per batch);
    the first non-finite one is found then. Under torchrun (``job.dist``) the model is trained
    with DistributedDataParallel (which averages the weight gradients), every rank draws the same
    permutation and trains on its shard of each global batch.
    """

    def __init__(
        self,
        job: FitContext,
        state: TrainingState,
        x: Tensor,
        y: Tensor,
        autocast: contextlib.AbstractContextManager,
    ) -> None:
        self.job, self.state, self.x, self.y, self.autocast = job, state, x, y, autocast
        self.batch_size = int(job.recipe.cfg.batch_size)
        self.trained = _wrapped(job)

    def run_epoch(self, epoch: int, gen: torch.Generator) -> float:
        loss, bad, bad_lr = self._epoch(epoch, gen)
        dist, device = self.job.dist, self.job.ctx.device
        if dist is not None:  # every rank logs the mean loss and stops together
            loss = dist.mean(loss, device)
            if dist.any(bad >= 0, device) and bad < 0:
                raise RunFailed(f"training diverged on another rank in epoch {epoch + 1}")
        if bad >= 0:
            raise RunFailed(
                f"training diverged: the loss became non-finite at epoch {epoch + 1}, batch "
                f"{bad + 1} (lr {bad_lr:g}); lower recipes.*.optimizer.lr, add warm-up, or use sgd"
            )
        return loss

    def _epoch(self, epoch: int, gen: torch.Generator) -> tuple[float, int, float]:
        """Mean loss, the first non-finite batch (-1: none) and the lr at it."""
        self.trained.train()
        ctx = self.job.recipe.ctx
        batches = self._batches(gen)
        losses, lrs = [], []
        augment = ctx.augment  # data.augment: training batches only, before the attack
        for b, (idx, weight) in enumerate(batches):
            xb, yb = _batch(self.x, self.y, idx, ctx.device)
            xb = augment(xb, gen) if augment else xb
            losses.append(self.train_batch(xb, yb, epoch + b / len(batches), lrs, weight))
        per_batch = torch.stack(losses).float()
        bad = (~torch.isfinite(per_batch)).nonzero()
        first = int(bad[0]) if len(bad) else -1
        return per_batch.mean().item(), first, lrs[first] if first >= 0 else 0.0

    def _batches(self, gen: torch.Generator) -> list[tuple[Tensor, float]]:
        """This rank's batches (indices) and each one's loss weight (1 in one process)."""
        perm = torch.randperm(len(self.x), generator=gen, device=gen.device).to(self.x.device)
        batches = perm.split(self.batch_size)
        dist = self.job.dist
        if dist is None:
            return [(b, 1.0) for b in batches]
        # a last batch smaller than the ranks would leave a rank with nothing. DDP averages the
        # ranks' gradients of their shard means; weighting each shard's mean by
        # world * shard / batch makes that average the gradient of the global batch's mean, as
        # in a single process, also when the shards differ in size (an odd batch on 2 ranks)
        return [
            (dist.shard(b), dist.world_size * len(dist.shard(b)) / len(b))
            for b in batches
            if len(b) >= dist.world_size
        ]

    def train_batch(
        self, x: Tensor, y: Tensor, progress: float, lrs: list[float], weight: float = 1.0
    ) -> Tensor:
        """One optimizer step on one batch; appends the lr it used to ``lrs``, returns the loss
        (on the device). ``progress`` is the epoch progress the recipe's warm-up reads;
        ``weight`` scales the loss (a DDP shard's share of its global batch)."""
        model, opt, hooks = self.trained, self.state.optimizer, self.state.hooks
        for h in hooks:
            h.before_loss(self.state.model, x, y)
        with self.autocast:
            loss = self.job.recipe.batch_loss(model, x, y, progress)
        if weight != 1.0:  # the ranks' mean of these is the global batch's mean loss
            loss = loss * weight
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for h in hooks:
            h.before_step(self.state.model)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        self.state.scheduler.step()
        for h in hooks:
            h.after_step(self.state.model)
        return loss.detach()


class ArtEngine:
    """One epoch through the recipe's ART trainer, on a classifier over the model.

    ART trains with the classifier's optimizer, which is the state's, so the schedule and the
    resume point are the native engine's.
    """

    def __init__(
        self,
        job: FitContext,
        state: TrainingState,
        x: Tensor,
        y: Tensor,
        autocast: contextlib.AbstractContextManager,
    ) -> None:
        from runner.attacks.art_attacks import make_classifier

        self.job, self.state, self.x, self.y = job, state, x, y
        ctx = job.ctx
        self.classifier = make_classifier(
            state.model, ctx.input_shape, ctx.num_classes, ctx.pixel_range, ctx.device
        )
        self.classifier._optimizer = state.optimizer  # noqa: SLF001 - ART trains with it

    def run_epoch(self, epoch: int, gen: torch.Generator) -> float:
        lr0 = self.state.optimizer.param_groups[0]["lr"]
        with contextlib.redirect_stderr(io.StringIO()):  # ART draws a tqdm bar per call
            loss = self.job.recipe.art_epoch(
                self.classifier, self.x, self.y, epoch, self.state.scheduler
            )
        if not all(torch.isfinite(p).all() for p in self.state.model.parameters()):
            raise RunFailed(
                f"training diverged: ART's trainer left non-finite weights in epoch {epoch + 1} "
                f"(lr {lr0:g} at its start; ART does not say which batch); lower "
                "recipes.*.optimizer.lr or use sgd"
            )
        return loss


ENGINES: dict[str, type[NativeEngine] | type[ArtEngine]] = {
    "native": NativeEngine,
    "art": ArtEngine,
}


def _wrapped(job: FitContext) -> torch.nn.Module:
    """The module the native engine trains: compiled on CUDA if asked, DDP under torchrun.
    Checkpoints keep the plain model's keys."""
    model, cfg, device = job.model, job.recipe.cfg, job.ctx.device
    trained = model
    if cfg.compile and device.type == "cuda":
        trained = torch.compile(model)
    if job.dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        trained = DistributedDataParallel(model, device_ids=ids)  # averages weight gradients
        if cfg.compile and device.type == "cuda":
            trained = torch.compile(trained)
    return trained


def _batch(x: Tensor, y: Tensor, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """One training batch on the run's device. A training set too large for the GPU stays in
    pinned host memory: the batch is gathered there and copied without blocking the host."""
    if x.device == device:
        return x[idx], y[idx]
    rows = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype, pin_memory=True)
    torch.index_select(x, 0, idx, out=rows)
    return rows.to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
