"""The resumable state of one training run, and the run's own checkpoint files.

:class:`TrainingState` is everything a killed run needs to continue as if it had not been killed:
the model, optimizer and schedule, the RNG streams (torch CPU and CUDA, NumPy's global one, which
ART's trainers shuffle with), the epochs done, the best epoch so far and the epoch table. It is
written to ``RUN/checkpoints/state.pt`` after every epoch; the file's keys are the format's
promise (a run killed by an older advrun resumes with a newer one), so they change only by adding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from runner.errors import AdvrunError
from runner.fsio import atomic_path

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

NO_BEST = {"epoch": -1, "robust": -1.0, "clean": -1.0}


class BatchHook(Protocol):
    """A per-batch seam of the native engine, with its own part of the resume point.

    ``before_loss`` runs before the recipe's batch loss (e.g. a weight perturbation on a proxy
    copy), ``before_step`` after the backward pass and before the optimizer step (e.g. undoing
    that perturbation), ``after_step`` after the optimizer and schedule stepped (e.g. updating an
    average of the weights). ``key`` names its entry in ``state.pt``; ``state_dict`` and
    ``load_state_dict`` save and restore it there. No hook is installed today.
    """

    key: str

    def before_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> None: ...
    def before_step(self, model: nn.Module) -> None: ...
    def after_step(self, model: nn.Module) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainingState:
    """What training has done so far; saved after every epoch and restored on a resume."""

    model: nn.Module
    optimizer: Optimizer
    scheduler: LRScheduler
    epoch: int = 0  # epochs finished
    best: dict[str, Any] = field(default_factory=lambda: dict(NO_BEST))
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    stopped: str | None = None  # why training stopped early, if it did
    stopped_epoch: int | None = None
    hooks: tuple[BatchHook, ...] = ()  # per-batch seams whose state is part of the resume point

    # -- the weights -----------------------------------------------------------------------
    def evaluated_model(self) -> nn.Module:
        """The weights validation, best-epoch selection and evaluation use: the trained model.

        A weight average kept beside it (an EMA hook) would be returned here instead.
        """
        return self.model

    def weights(self) -> dict[str, Tensor]:
        """A detached copy of the trained weights, as the resume point keeps them."""
        return _copy(self.model)

    def evaluated_weights(self, trained: dict[str, Tensor]) -> dict[str, Tensor]:
        """The weights last.pt and best.pt hold: :meth:`evaluated_model`'s (``trained``, the
        copy :meth:`weights` made this epoch, when that is the trained model itself)."""
        model = self.evaluated_model()
        return trained if model is self.model else _copy(model)

    # -- one epoch's bookkeeping -----------------------------------------------------------
    def end_epoch(self, row: dict[str, Any], improved: bool, stopped: str | None) -> None:
        """Record a finished epoch: its row, the best so far, and an early stop."""
        epoch = int(row["epoch"])
        if improved:
            self.best = {"epoch": epoch, "robust": row["val_robust"], "clean": row["val_clean"]}
        self.epoch = epoch
        self.stopped, self.stopped_epoch = stopped, epoch if stopped else None

    # -- the resume point ------------------------------------------------------------------
    def save(self, path: Path, weights: dict[str, Tensor]) -> None:
        """Write the resume point atomically (``weights``: this epoch's :meth:`weights`)."""
        state = {
            "model": weights,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **rng_state(),
            "epoch": self.epoch,
            "best": self.best,
            "history": self.history,
            "stopped": self.stopped,
            "stopped_epoch": self.stopped_epoch,
        }
        state.update({h.key: h.state_dict() for h in self.hooks})
        save_state_dict(state, path)

    def restore(self, path: Path, device: torch.device) -> None:
        """Continue from a resume point: weights, optimizer, schedule, RNG streams, progress."""
        st = load_checkpoint(path, device)
        try:
            self.model.load_state_dict(st["model"])
            self.optimizer.load_state_dict(st["optimizer"])
            self.scheduler.load_state_dict(st["scheduler"])
            for h in self.hooks:
                h.load_state_dict(st[h.key])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # tampered or other code
            detail = " ".join(str(e).split())[:200]
            raise AdvrunError(
                f"run checkpoint {path} does not fit this run ({type(e).__name__}: "
                f"{detail}); {retrain_hint(path)}"
            ) from None
        set_rng_state(st)
        self.epoch, self.best, self.history = st["epoch"], dict(st["best"]), list(st["history"])
        self.stopped, self.stopped_epoch = st.get("stopped"), st.get("stopped_epoch")


def _copy(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- RNG streams ---------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The global RNG streams, under their keys in ``state.pt``."""
    return {
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "rng_numpy": _numpy_state(),
    }


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["rng_cpu"].cpu())
    if torch.cuda.is_available() and st.get("rng_cuda") is not None:
        torch.cuda.set_rng_state_all([s.cpu() for s in st["rng_cuda"]])
    if st.get("rng_numpy") is not None:  # ART's trainers shuffle with NumPy's global stream
        _set_numpy_state(st["rng_numpy"])


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": pos,
        "gauss": [has_gauss, cached],
    }


def _set_numpy_state(st: dict[str, Any]) -> None:
    keys = st["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, int(st["pos"]), int(st["gauss"][0]), float(st["gauss"][1]))
    )


# -- the run's checkpoint files ------------------------------------------------------------
def save_state_dict(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path, device: torch.device) -> Any:
    """One of the run's own checkpoints (weights_only: a tampered file cannot run code)."""
    from runner.checkpoint import safe_load

    return safe_load(path, device, what="run checkpoint", fix=retrain_hint(path))


def load_weights(model: nn.Module, path: Path, device: torch.device) -> None:
    """Load one of the run's own weight files into ``model``, with a clear error if it does not fit."""
    from runner.checkpoint import load_into

    load_into(model, load_checkpoint(path, device), path, "this run's model", retrain_hint(path))


def retrain_hint(path: Path) -> str:
    return (
        f"delete {path.parent} to retrain this run from scratch, or rerun with --force (with "
        "--only ID to limit it to this run)"
    )
