"""What one call of :func:`runner.train.loop.fit` needs: the model, the recipe, the data, where
it writes and whom it tells (shared by the loop and the engines)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

    from runner.dist import Dist
    from runner.recipes.base import Recipe, TrainContext

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class FitContext:
    """What one call of :func:`fit` trains, on what, where it writes and whom it tells.

    ``ctx`` is the recipe's view of the run (device, threat, pass counter...); ``guard`` is called
    before each epoch's files are written (the run claim's ownership check); ``on_epoch`` gets
    each epoch's row and ``progress`` (a tqdm bar) one tick per epoch, on rank 0. Under torchrun
    (``dist``) the model is trained with DistributedDataParallel; rank 0 validates and writes,
    and its checkpoints are a single-process run's.
    """

    model: nn.Module
    recipe: Recipe
    x: Tensor
    y: Tensor
    x_val: Tensor
    y_val: Tensor
    ctx: TrainContext
    seed: int
    run_dir: Path
    log: Callable[[str], None]
    on_epoch: EpochCallback | None = None
    progress: Any = None
    guard: Callable[[], None] | None = None
    dist: Dist | None = None

    @property
    def main(self) -> bool:
        """Whether this process writes the run store (rank 0, or the only one)."""
        return self.dist is None or self.dist.main

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def n_val(self) -> int:
        """Validation examples monitored each epoch."""
        return min(self.recipe.cfg.monitor.n, len(self.x_val))
