"""The shared training loop: every recipe plugs its batch loss (or ART's trainer) into it.

:func:`fit` sets up a :class:`~runner.train.state.TrainingState` (resumed from the run's resume
point if there is one) and an engine (:mod:`runner.train.engines`), then runs the epoch loop: per
epoch the engine trains over a seeded permutation, the loop measures clean and PGD accuracy on a
validation subset and writes the last and best checkpoints (best robust; best clean for clean
baselines), the epoch table and the resume point (model, optimizer, scheduler, RNG states).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from runner import faults
from runner.attacks import native
from runner.device import generator
from runner.fsio import write_text
from runner.recipes.base import TrainContext
from runner.spec.recipes import RecipeBase
from runner.train.context import FitContext
from runner.train.engines import ENGINES, Engine
from runner.train.optim import make_optimizer, make_scheduler
from runner.train.state import TrainingState, load_weights, save_state_dict

if TYPE_CHECKING:
    from runner.passes import PassCounter

__all__ = [
    "FitContext",
    "FitResult",
    "fit",
    "load_weights",
    "score_of",
    "validate",
    "validate_fgsm",
]

CPU = torch.device("cpu")


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: str | None  # the reason, e.g. catastrophic overfitting
    stopped_epoch: int | None = None  # the epoch after which training stopped early


@torch.no_grad()
def _clean_correct(model: nn.Module, x: Tensor, y: Tensor, bs: int) -> Tensor:
    return torch.cat(
        [model(x[i : i + bs]).argmax(1) == y[i : i + bs] for i in range(0, len(x), bs)]
    )


def validate(
    model: nn.Module, x: Tensor, y: Tensor, ctx: TrainContext, steps: int, bs: int = 512
) -> tuple[float, float]:
    """Clean and PGD accuracy at the threat model (step 2.5*eps/steps), in eval mode."""
    if len(x) == 0:
        return float("nan"), float("nan")
    was = model.training
    model.eval()
    lo, hi = ctx.pixel_range
    eps = ctx.threat.eps
    clean = _clean_correct(model, x, y, bs)
    robust = []
    for i in range(0, len(x), bs):
        xa = native.pgd(
            model,
            x[i : i + bs],
            y[i : i + bs],
            eps,
            2.5 * eps / steps,
            steps,
            ctx.threat.norm,
            lo,
            hi,
        )
        robust.append(_clean_correct(model, xa, y[i : i + bs], bs))
    model.train(was)
    return clean.float().mean().item(), torch.cat(robust).float().mean().item()


def validate_fgsm(
    model: nn.Module, x: Tensor, y: Tensor, ctx: TrainContext, bs: int = 512
) -> float:
    """FGSM accuracy at the threat model (one step of eps, no random start), in eval mode: what
    a single-step recipe's guard compares with PGD accuracy. Its passes count as the run's."""
    if len(x) == 0:
        return float("nan")
    was = model.training
    model.eval()
    lo, hi = ctx.pixel_range
    eps = ctx.threat.eps
    correct = []
    for i in range(0, len(x), bs):
        xb = x[i : i + bs]
        xa = native.pgd(model, xb, y[i : i + bs], eps, eps, 1, ctx.threat.norm, lo, hi,
                        rand_init=False)  # fmt: skip
        correct.append(_clean_correct(model, xa, y[i : i + bs], bs))
    model.train(was)
    return torch.cat(correct).float().mean().item()


def _csv(history: list[dict[str, Any]]) -> str:
    """Every column any epoch has, in first-seen order; a cell an epoch lacks is empty (a run
    resumed by a newer advrun logs columns its first epochs did not have, e.g. val_fgsm)."""
    cols = list(dict.fromkeys(c for r in history for c in r))
    lines = [",".join(cols)] + [",".join(_cell(r.get(c, "")) for c in cols) for r in history]
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def score_of(row: dict[str, Any], n_val: int, adversarial: bool) -> tuple[float, float]:
    """What "best" means: the most robust epoch for adversarial recipes (Rice et al. 2020),
    the most accurate one for clean baselines (selecting a clean model by robustness would
    cherry-pick the baseline), the latest one without validation data."""
    if not n_val:
        return (float(row["epoch"]), 0.0)
    robust, clean = row.get("val_robust", row.get("robust")), row.get("val_clean", row.get("clean"))
    return (robust, clean) if adversarial else (clean, robust)


def fit(job: FitContext) -> FitResult:
    """Train ``job.model`` in place with ``job.recipe``; resumable from ``checkpoints/state.pt``.

    Sets up the training state and the engine, continues from the resume point if there is one,
    then runs the epochs left.
    """
    cfg, ctx = job.recipe.cfg, job.ctx
    x, y = job.recipe.training_data(job.x, job.y)
    if x.device != ctx.device:  # kept on the host (too large for the GPU): pinned, labels too
        x, y = (t if t.is_pinned() else t.pin_memory() for t in (x.cpu(), y.cpu()))
    epochs = cfg.loop_epochs()  # fewer than cfg.epochs when each batch is replayed (Free-AT)
    steps_per_epoch = -(-len(x) // int(cfg.batch_size)) * job.recipe.replays
    opt = make_optimizer(job.model, cfg.optimizer)
    # milestone_epochs count the spec's epochs, replayed or not
    sched = make_scheduler(opt, cfg.schedule, epochs * steps_per_epoch, int(cfg.epochs))
    autocast = _device_options(job.model, cfg, ctx.device, job.log)
    hooks = job.recipe.batch_hooks(job.model, steps_per_epoch)  # after channels_last: copies
    state = TrainingState(job.model, opt, sched, hooks=hooks)
    if cfg.channels_last and ctx.device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    engine = ENGINES[cfg.engine](job, state, x, y, autocast)
    resume = job.checkpoints / "state.pt"
    if resume.exists():  # resume after a kill: same weights, optimizer, schedule and RNG streams
        state.restore(resume, ctx.device)
        if state.stopped:  # it had stopped early before the kill: nothing left to train
            load_weights(job.model, job.checkpoints / "best.pt", ctx.device)
            return _result(state)
        job.log(f"resumed at epoch {state.epoch}")
    return _train_epochs(job, state, engine)


def _train_epochs(job: FitContext, state: TrainingState, engine: Engine) -> FitResult:
    """The epoch loop: train, validate, record, write; stop at the end or when the recipe says."""
    passes = _PassTally(job.ctx.counter, state.history)
    for epoch in range(state.epoch, job.recipe.cfg.loop_epochs()):
        t0 = time.perf_counter()
        loss = engine.run_epoch(epoch, _epoch_generator(job, epoch))
        row = _epoch_row(job, state, epoch, loss, t0, passes)
        state.history.append(row)
        if job.guard is not None:
            job.guard()
        weights = state.weights()
        improved = score_of(row, job.n_val, job.recipe.adversarial) > score_of(
            state.best, job.n_val, job.recipe.adversarial
        )
        state.end_epoch(row, improved, job.recipe.should_stop(state.history))
        if job.main:  # only rank 0 writes the run store
            _write_epoch(job, state, weights, improved)
            _report_epoch(job, row)
        if state.stopped:
            return _stop_early(job, state)
    return FitResult(history=state.history, best_epoch=state.best["epoch"], stopped_early=None)


def _epoch_generator(job: FitContext, epoch: int) -> torch.Generator:
    """The epoch's stream (permutation, augmentation); under torchrun also each rank's own
    global seed for its attack starts, the same on a resume."""
    if job.dist is not None:
        torch.manual_seed(job.seed * 100003 + epoch * 7919 + job.dist.rank + 1)
    device = job.ctx.device
    return generator(job.seed * 100003 + epoch, device if device.type != "mps" else CPU)


def _epoch_row(
    job: FitContext, state: TrainingState, epoch: int, loss: float, t0: float, passes: _PassTally
) -> dict[str, Any]:
    """The epoch's line of epochs.csv: loss, lr, eps, validation accuracy, time, passes."""
    n_val = job.n_val
    val_clean, val_robust = (
        validate(state.evaluated_model(), job.x_val[:n_val], job.y_val[:n_val], job.ctx,
                 job.recipe.cfg.monitor.steps)
        if n_val and job.main
        else (float("nan"),) * 2
    )  # fmt: skip
    if job.dist is not None:  # rank 0's numbers on every rank: the same best and stop decisions
        val_clean, val_robust = job.dist.broadcast((val_clean, val_robust))
    row = {
        "epoch": epoch + 1,
        "loss": loss,
        "lr": state.optimizer.param_groups[0]["lr"],
        "eps": job.recipe.eps_at(epoch + 1) if job.recipe.adversarial else 0.0,
        "val_clean": val_clean,
        "val_robust": val_robust,
    }
    if job.recipe.watches_fgsm():  # a single-step recipe's guard: FGSM vs PGD (else unchanged)
        val_fgsm = (
            validate_fgsm(state.evaluated_model(), job.x_val[:n_val], job.y_val[:n_val], job.ctx)
            if n_val and job.main
            else float("nan")
        )
        if job.dist is not None:
            (val_fgsm,) = job.dist.broadcast((val_fgsm,))
        row["val_fgsm"] = val_fgsm
    row["seconds"] = time.perf_counter() - t0
    return row | passes.columns()


class _PassTally:
    """Forward and backward passes (examples) so far, carried across resumes in the epoch table."""

    def __init__(self, counter: PassCounter | None, history: list[dict[str, Any]]) -> None:
        self.counter = counter
        self.done = history[-1] if history else {}
        self.at_start = (counter.forward, counter.backward) if counter else (0, 0)

    def columns(self) -> dict[str, int]:
        if self.counter is None:
            return {}
        f0, b0 = self.at_start
        return {
            "forward_passes": self.done.get("forward_passes", 0) + self.counter.forward - f0,
            "backward_passes": self.done.get("backward_passes", 0) + self.counter.backward - b0,
        }


def _write_epoch(
    job: FitContext, state: TrainingState, weights: dict[str, Tensor], improved: bool
) -> None:
    """last.pt (and best.pt if it improved), epochs.csv, then the resume point."""
    shown = state.evaluated_weights(weights)
    save_state_dict(shown, job.checkpoints / "last.pt")
    if improved:
        save_state_dict(shown, job.checkpoints / "best.pt")
    write_text(job.run_dir / "epochs.csv", _csv(state.history))
    state.save(job.checkpoints / "state.pt", weights)


def _report_epoch(job: FitContext, row: dict[str, Any]) -> None:
    epoch, loss, val_robust = row["epoch"], row["loss"], row["val_robust"]
    job.log(
        f"epoch {epoch}/{job.recipe.cfg.loop_epochs()} loss {loss:.4f} val clean "
        f"{row['val_clean']:.3f} robust {val_robust:.3f}"
    )
    faults.reached(f"epoch:{epoch}")
    if job.progress is not None:
        job.progress.update(1)
        job.progress.set_postfix(loss=f"{loss:.3f}", val_rob=f"{val_robust:.3f}")
    if job.on_epoch is not None:
        job.on_epoch(row)


def _stop_early(job: FitContext, state: TrainingState) -> FitResult:
    """Restore the best epoch: the run's model is the one from before the collapse."""
    if job.dist is not None:
        job.dist.barrier()  # rank 0 has written best.pt
    load_weights(job.model, job.checkpoints / "best.pt", job.ctx.device)
    if job.main:
        job.log(f"stopped early: {state.stopped}; restored epoch {state.best['epoch']}")
    return _result(state)


def _result(state: TrainingState) -> FitResult:
    return FitResult(state.history, state.best["epoch"], state.stopped, state.stopped_epoch)


def _device_options(model: nn.Module, cfg: RecipeBase, device: torch.device, log):
    """bf16 autocast and channels_last on CUDA; elsewhere a note that they are ignored."""
    flags = (("amp", cfg.amp != "off"), ("channels_last", cfg.channels_last),
             ("compile", cfg.compile))  # fmt: skip
    wanted = [k for k, on in flags if on]
    if wanted and device.type != "cuda":
        log(f"note: {' and '.join(wanted)} apply on CUDA only; ignored on {device.type}")
        return contextlib.nullcontext()
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.amp == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
