"""Adversarial weight perturbation (``awp:``, Wu, Xia & Wang, NeurIPS 2020), an option of the PGD
and TRADES recipes: a per-batch hook on the weights, and ART's AdversarialTrainerAWPPyTorch behind
``engine: art``. (The other hook on the weights, ``ema:``, is :mod:`runner.recipes.averaging`.)

The hook follows :class:`runner.train.state.BatchHook`: the native engine calls ``before_loss`` after
the recipe crafted its batch, ``before_step`` after the backward pass, ``after_step`` after the
optimizer step; ``state_dict`` is their part of the run's resume point (``state.pt``). Copies of
the model made here count their forward and backward passes into the run's PassCounter (it is
shared by deep copies), so the cost columns include them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import Tensor, nn

    from runner.recipes.base import Batch, Recipe
    from runner.spec.recipes import AWPSpec

PROXY_LR = 0.01  # the AWP code's proxy optimizer; its scale cancels in the per-layer normalisation
_EPS = 1e-20  # the AWP code's guard against a zero step


class WeightPerturbation:
    """AWP: before each batch's loss, move the weights ``gamma`` * ||w|| (per layer) along the
    direction that increases the recipe's own loss on the crafted batch; put them back before the
    optimizer step, so the step applies the gradient taken at the perturbed weights to the
    unperturbed ones.

    As the authors' code (github.com/csdongxian/AWP, ``AdvWeightPerturb``/``TradesAWP``): a proxy
    copy of the model loads the weights, takes one SGD step (lr 0.01, train mode) on the negated
    training loss, and the perturbation of each weight tensor of 2 or more dimensions whose name
    holds "weight" (convolution and linear layers; biases and BatchNorm are left alone) is the
    proxy's change, rescaled to that tensor's norm, times ``gamma``. Two differences, both
    deliberate: the weights are restored by copying them back (exactly; the code subtracts the
    perturbation again, which leaves a rounding residue) and before the optimizer step (the code
    restores after it, which differs by the weight decay applied to the perturbation, lr * wd *
    gamma * ||w||, a second-order term). The perturbation starts after ``warmup_epochs`` epochs.
    Under torchrun the proxy's gradient is averaged over the ranks, as one process with the whole
    batch would compute it.
    """

    key = "awp"

    def __init__(self, model: nn.Module, loss: Callable[[nn.Module, Batch], Tensor],
                 cfg: AWPSpec) -> None:  # fmt: skip
        self.loss, self.gamma, self.warmup = loss, float(cfg.gamma), int(cfg.warmup_epochs)
        self.proxy = copy.deepcopy(model)
        self.proxy_optimizer = torch.optim.SGD(self.proxy.parameters(), lr=PROXY_LR)
        params = dict(model.named_parameters())
        self.names = [
            k
            for k, v in model.state_dict().items()
            if v.dim() > 1 and "weight" in k and k in params
        ]
        self.saved: dict[str, Tensor] | None = None

    def before_loss(self, model: nn.Module, batch: Batch) -> None:
        if batch.progress < self.warmup:  # epochs done < warmup_epochs
            return
        diff = self.direction(model, batch)
        params = dict(model.named_parameters())
        self.saved = {n: params[n].detach().clone() for n in diff}
        with torch.no_grad():
            for n, d in diff.items():
                params[n].add_(d, alpha=self.gamma)

    def direction(self, model: nn.Module, batch: Batch) -> dict[str, Tensor]:
        """Per weight tensor: the proxy's ascent step on the loss, rescaled to the tensor's norm."""
        proxy = self.proxy
        proxy.load_state_dict(model.state_dict())
        proxy.train()
        loss = -self.loss(proxy, batch)
        self.proxy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _average_over_ranks(proxy)
        self.proxy_optimizer.step()
        old, new = model.state_dict(), proxy.state_dict()
        out = {}
        for n in self.names:
            d = new[n] - old[n]
            out[n] = old[n].norm() / (d.norm() + _EPS) * d
        return out

    def before_step(self, model: nn.Module) -> None:
        if self.saved is None:
            return
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, w in self.saved.items():
                params[n].copy_(w)
        self.saved = None

    def after_step(self, model: nn.Module) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        """The proxy optimizer (plain SGD: no state but its settings); the proxy itself reloads
        the weights every batch."""
        return {"proxy_optimizer": self.proxy_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.proxy_optimizer.load_state_dict(state["proxy_optimizer"])


def _average_over_ranks(model: nn.Module) -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def awp_hooks(recipe: Recipe, model: nn.Module) -> tuple[Any, ...]:
    """The recipe's AWP hook if its spec sets ``awp`` (PGD and TRADES)."""
    if recipe.cfg.awp is None:
        return ()
    return (WeightPerturbation(model, recipe.loss, recipe.cfg.awp),)


def art_awp_epoch(recipe: Recipe, classifier, x: Tensor, y: Tensor, epoch: int, scheduler,
                  mode: str) -> float:  # fmt: skip
    """One epoch of ART's AdversarialTrainerAWPPyTorch (``mode`` PGD or TRADES), batch by batch.

    ART's ``fit`` steps a scheduler once per epoch, so advrun drives its per-batch step
    ``_batch_process`` with the spec's per-batch schedule, switching the perturbation on after
    ``awp.warmup_epochs`` as ART's ``fit`` does. The inner attack is ART's PGD with the recipe's
    eps, step_size and steps (a random start for PGD as the recipe says; from x itself for TRADES,
    as advrun's ART TRADES trainer). The proxy classifier: a copy of the model with plain SGD at
    lr 0.01, as the AWP code. ART restores the weights after the optimizer step.
    """
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainerAWPPyTorch

    from runner.attacks.art_attacks import make_classifier
    from runner.recipes.base import art_batches, one_hot

    cfg, ctx = recipe.cfg, recipe.ctx
    trainer = recipe.__dict__.get("_art_trainer")
    if trainer is None:  # one trainer, proxy and attack for the whole run
        proxy_model = copy.deepcopy(classifier.model)
        proxy = make_classifier(
            proxy_model, ctx.input_shape, ctx.num_classes, ctx.pixel_range, ctx.device
        )
        proxy._optimizer = torch.optim.SGD(proxy_model.parameters(), lr=PROXY_LR)  # noqa: SLF001
        random = mode == "PGD" and cfg.random_start
        attack = ProjectedGradientDescent(
            classifier,
            norm=np.inf if recipe.norm == "linf" else 2,
            eps=cfg.eps,
            eps_step=cfg.step_size,
            max_iter=cfg.steps,
            num_random_init=1 if random else 0,
            batch_size=cfg.batch_size,
            verbose=False,
        )
        trainer = recipe._art_trainer = AdversarialTrainerAWPPyTorch(
            classifier, proxy, attack, mode=mode, gamma=cfg.awp.gamma,
            beta=float(getattr(cfg, "beta", 6.0)), warmup=cfg.awp.warmup_epochs,
        )  # fmt: skip
    trainer._apply_wp = epoch >= cfg.awp.warmup_epochs  # noqa: SLF001 - as ART's fit sets it
    xs, ys = x.cpu().numpy(), one_hot(y, ctx.num_classes)
    loss_sum, n = 0.0, 0
    for idx in art_batches(len(xs), cfg.batch_size):
        batch_loss, _, count = trainer._batch_process(xs[idx], ys[idx])  # noqa: SLF001
        loss_sum, n = loss_sum + batch_loss, n + count
        scheduler.step()
    return loss_sum / max(1, n)
