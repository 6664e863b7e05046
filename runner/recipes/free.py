"""``free``: Shafahi et al. 2019, "Adversarial Training for Free!" (NeurIPS 2019, arXiv:1904.12843).

Each minibatch is replayed ``m`` times. At every replay one forward and one backward pass on
clip(x + delta) give both gradients: the weights' (the optimizer step) and the input's, with which
the perturbation delta takes a signed step of size ``step`` and is clipped back into the eps ball
(an L2 step along the normalised gradient and a rescale into the ball under an L2 threat). delta
is carried over to the next replay and to the next minibatch; it starts at 0 (the paper's
Algorithm 1 and its code's ``global_noise_data``). The training loop runs ceil(epochs / m) passes
over the data, so the optimizer steps and the forward/backward passes match ``epochs`` epochs of
natural training, as the paper ("we train for N_ep/m epochs") and its code
(``epochs / n_repeats``). The passes are those of the training step itself, in train mode: this is
the one recipe whose perturbation comes from the model in train mode, by design.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from runner import expr
from runner.recipes.base import Batch, Recipe, TrainContext
from runner.spec.base import Expr, IntSweep
from runner.spec.recipes import AdversarialRecipeBase, Problem, as_list

if TYPE_CHECKING:
    from torch import Tensor, nn

    from runner.spec.recipes import RecipeBase


class FreeRecipe(AdversarialRecipeBase):
    """Shafahi et al. 2019: each minibatch replayed m times, the perturbation carried over."""

    eps_relative: ClassVar[tuple[str, ...]] = ("step",)
    kind: Literal["free"] = Field(description="Free adversarial training (Shafahi et al. 2019)")
    m: IntSweep = Field(
        8,
        description="replays of each minibatch, 1 to 100 (the paper: 8 on CIFAR-10, 4 on "
        "ImageNet); the loop makes ceil(epochs / m) passes over the data; a list sweeps",
    )
    step: Expr = Field(
        "eps",
        description="step of the carried perturbation at each replay; 'eps' is this recipe's eps "
        "(the paper: eps)",
    )

    def loop_epochs(self, epochs: int | None = None) -> int:
        # before a sweep is fixed, the fewest passes (the largest m): what the checks must allow
        return math.ceil(int(self.epochs if epochs is None else epochs) / max(as_list(self.m)))

    def check(self, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        for m in as_list(self.m):
            if not 1 <= m <= 100:
                yield (
                    (*where, "m"),
                    f"m {m} must be in 1..100: the replays of each minibatch (the paper: 4 to 10)",
                )
        if self.eps_warmup_epochs:
            yield (
                (*where, "eps_warmup_epochs"),
                "free carries one perturbation across batches and has no eps warm-up; set "
                "eps_warmup_epochs: 0",
            )

    def check_at_eps(self, eps: float, where: tuple[Any, ...], spec: Any) -> Iterator[Problem]:
        step = expr.evaluate(self.step, eps)
        if not 0 < step <= 2 * eps:
            yield (
                (*where, "step"),
                f"step {step:g} must be in (0, 2*eps] = (0, {2 * eps:g}] (the paper: eps)",
            )


class CarriedPerturbation:
    """Free-AT's perturbation, carried across replays and batches: a per-batch hook that takes
    the input gradient of each training step (``before_step``, after the backward pass) and
    keeps delta in the resume point."""

    key = "free"

    def __init__(self, eps: float, step: float, norm: str) -> None:
        self.eps, self.step, self.norm = eps, step, norm
        self.delta: Tensor | None = None  # one batch's worth, zeros at the start
        self.current: Tensor | None = None  # this step's leaf (delta[:n], requiring grad)

    def leaf(self, x: Tensor) -> Tensor:
        """delta for this batch (its first len(x) rows), as a leaf whose gradient the training
        step's backward pass fills."""
        import torch

        if self.delta is None:
            self.delta = torch.zeros_like(x)
        self.current = self.delta[: len(x)].detach().clone().requires_grad_(True)
        return self.current

    def before_loss(self, model: nn.Module, batch: Batch) -> None:
        return None

    def before_step(self, model: nn.Module) -> None:
        import torch

        cur = self.current
        if cur is None or cur.grad is None or self.delta is None:
            return
        with torch.no_grad():
            g = cur.grad
            if self.norm == "linf":
                new = (cur + self.step * g.sign()).clamp_(-self.eps, self.eps)
            else:
                flat = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1))
                new = cur + self.step * g / flat
                size = new.flatten(1).norm(dim=1).clamp_min(1e-12).view_as(flat)
                new = new * (self.eps / size).clamp(max=1.0)
            self.delta[: len(cur)] = new
        self.current = None

    def after_step(self, model: nn.Module) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"delta": self.delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.delta = state["delta"]


class FreeTraining(Recipe):
    config = FreeRecipe
    adversarial = True

    def __init__(self, cfg: RecipeBase, ctx: TrainContext) -> None:
        super().__init__(cfg, ctx)
        self.replays = int(cfg.m)
        eps = float(cfg.eps)
        self.carried = CarriedPerturbation(eps, self.scaled("step", eps), self.norm)

    def craft(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Batch:
        x_adv = (x + self.carried.leaf(x)).clamp(self.lo, self.hi)  # the input stays in range
        return Batch(x, y, epoch_progress, x_adv)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(model(batch.x_adv), batch.y)

    def batch_loss(self, model: nn.Module, x: Tensor, y: Tensor, epoch_progress: float) -> Tensor:
        return self.loss(model, self.craft(model, x, y, epoch_progress))

    def batch_hooks(self, model: nn.Module, steps_per_epoch: int) -> tuple[Any, ...]:
        return (self.carried, *super().batch_hooks(model, steps_per_epoch))
