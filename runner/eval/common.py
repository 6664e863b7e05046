"""Small tensor helpers shared by the cascade, the curves and the checklist."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from runner.catalog import ATTACKS


@torch.no_grad()
def logits_of(model: nn.Module, x: Tensor, bs: int) -> Tensor:
    if len(x) == 0:
        return torch.empty(0, device=x.device)
    return torch.cat([model(x[i : i + bs]) for i in range(0, len(x), bs)])


def margins(logits: Tensor, y: Tensor) -> Tensor:
    """Logit of the true class minus the best other logit (< 0 means misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def logit_difference(a: Tensor, b: Tensor) -> tuple[float, bool, bool]:
    """Two forward passes of the same inputs: their largest logit difference, whether it is within
    float noise (1e-6 of the largest logit: the model is deterministic), and whether every
    prediction agrees."""
    if not len(a):
        return 0.0, True, True
    diff = float((a - b).abs().max())
    same = diff <= 1e-6 * max(float(a.abs().max()), 1.0)
    return diff, same, bool((a.argmax(1) == b.argmax(1)).all())


def majority_draw(
    model: nn.Module, x: Tensor, y: Tensor, draws: int, bs: int
) -> tuple[Tensor, Tensor]:
    """A random model's verdict on inputs ``x`` by ``draws`` forward passes: per example, the
    prediction and margin of the draw whose margin ranks ``draws // 2 + 1``-th from the lowest,
    so the margin is negative exactly when most draws misclassify the input."""
    with torch.no_grad():
        logits = torch.stack([logits_of(model, x, bs) for _ in range(draws)])  # draw, ex., class
    m = torch.stack([margins(one, y) for one in logits])
    margin, which = m.kthvalue(draws // 2 + 1, dim=0)
    pred = logits[which, torch.arange(len(y), device=y.device)].argmax(1)
    return pred, margin


@contextlib.contextmanager
def fast_layout(model: nn.Module, x: Tensor) -> Iterator[nn.Module]:
    """On a CPU, run the model with its 4-D weights in channels-last layout while attacking.

    PyTorch's CPU convolutions and max-pools are much faster channels-last (measured: 1.15x per
    gradient pass for the digits CNN, 1.6x at 32x32x3; bench/attacks.py). The same numbers up
    to float rounding: a probe compares the logits of a few examples both ways and keeps the
    layout only if they agree and forward and backward run (a model that ``.view``s a
    non-contiguous tensor does not). The weights are restored on exit. Elsewhere (CUDA has its
    own layout rules), or for a model already channels-last, nothing changes.
    """
    weights = [t for t in (*model.parameters(), *model.buffers()) if t.dim() == 4]
    if (
        x.device.type != "cpu"
        or x.dim() != 4
        or not weights
        or not all(t.is_contiguous() for t in weights)
    ):
        yield model
        return
    probe = x[:4].detach()
    with torch.no_grad():
        before = model(probe)
    model.to(memory_format=torch.channels_last)
    try:
        xp = probe.clone().requires_grad_(True)
        after = model(xp)
        torch.autograd.grad(after.sum(), xp)
        ok = torch.allclose(after.detach(), before, rtol=1e-4, atol=1e-5)
    except RuntimeError:
        ok = False
    if not ok:
        model.to(memory_format=torch.contiguous_format)
        yield model
        return
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


def perturbation_norm(x: Tensor, x_adv: Tensor, norm: str) -> Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(p=2, dim=1)


def attack_cost(cfg: Any) -> float:
    """Gradient passes per attacked example at most (a forward-only pass counts 1/2, about what
    it costs beside a forward + input-gradient backward), to order a cascade cheap to expensive:
    the attack plug-in's ``cost``.

    Early exit makes broken examples cheaper; these are the budgets an unbroken example spends.
    """
    return ATTACKS.load(cfg.kind)(cfg).cost()


def progress(items: list, desc: str):
    """A progress bar over attacks on a terminal; silent when stderr is not one (CI, logs)."""
    return tqdm(items, desc=desc, leave=False, disable=not sys.stderr.isatty())
