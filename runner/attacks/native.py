"""Native FGSM and PGD: on the device, gradients w.r.t. the input only, projection every step.

Every step projects the perturbation twice: into the eps-ball and so that x + delta stays in the
pixel range. Clamping only at the model input would zero the gradient of saturated pixels and
silently weaken the attack. Call with the model in eval mode (the callers do).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_TINY = 1e-12
_SUBNORMAL = 1e-30


def _flat_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(p=2, dim=1).clamp_min(_TINY).view(-1, *([1] * (t.dim() - 1)))


def project(
    x: Tensor, delta: Tensor, eps: float | Tensor, norm: str, lo: float, hi: float
) -> Tensor:
    """Project delta into the eps-ball of ``norm``, then so that x + delta lies in [lo, hi]."""
    if norm == "linf":
        if isinstance(eps, Tensor):
            delta = torch.maximum(torch.minimum(delta, eps), -eps)
        else:
            delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _flat_norm(delta)).clamp(max=1.0)
    out = (x + delta).clamp(lo, hi)
    # flush subnormal pixels: on CPUs they slow every following convolution down many times
    return out.masked_fill(out.abs() < _SUBNORMAL, 0.0) - x


def random_start(
    x: Tensor, eps: float | Tensor, norm: str, lo: float, hi: float, generator=None
) -> Tensor:
    """A uniform point in the Linf ball, or a point uniform in the L2 ball (radius ~ U^(1/d))."""
    if norm == "linf":
        u = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        delta = (2 * u - 1) * eps
    else:
        g = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        d = x[0].numel()
        r = torch.rand((x.shape[0],), device=x.device, dtype=x.dtype, generator=generator) ** (
            1.0 / d
        )
        delta = g / _flat_norm(g) * r.view(-1, *([1] * (x.dim() - 1))) * eps
    return project(x, delta, eps, norm, lo, hi)


def _step(grad: Tensor, size: float | Tensor, norm: str) -> Tensor:
    return size * (grad.sign() if norm == "linf" else grad / _flat_norm(grad))


def input_grad(model: nn.Module, x_adv: Tensor, y: Tensor, loss_fn=None) -> tuple[Tensor, Tensor]:
    """Gradient of the summed loss w.r.t. the input only (weights get no .grad), and the logits."""
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    loss = (loss_fn or _ce_sum)(logits, y)
    (grad,) = torch.autograd.grad(loss, x_adv)
    return grad, logits.detach()


def _ce_sum(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="sum")


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str = "linf",
    lo: float = 0.0,
    hi: float = 1.0,
) -> Tensor:
    """One gradient step of size eps (Goodfellow et al. 2015)."""
    grad, _ = input_grad(model, x, y)
    delta = project(x, _step(grad, eps, norm), eps, norm, lo, hi)
    return (x + delta).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float | Tensor,
    step_size: float | Tensor,
    steps: int,
    norm: str = "linf",
    lo: float = 0.0,
    hi: float = 1.0,
    rand_init: bool = True,
    restarts: int = 1,
    loss_fn=None,
    generator=None,
) -> Tensor:
    """PGD (Madry et al. 2018), keeping per example the restart that fools the model (or the last).

    ``eps`` and ``step_size`` may be per-example tensors broadcastable to x (eps warm-up, curves).
    """
    x = x.detach()
    best = x.clone()
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        delta = random_start(x, eps, norm, lo, hi, generator) if rand_init else torch.zeros_like(x)
        for _ in range(steps):
            grad, _ = input_grad(model, x + delta, y, loss_fn)
            delta = project(x, delta + _step(grad, step_size, norm), eps, norm, lo, hi)
        x_adv = (x + delta).detach()
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            now_fooled = model(x_adv).argmax(1) != y
        take = now_fooled | ~fooled  # keep a fooling restart once found
        best[take] = x_adv[take]
        fooled |= now_fooled
    return best
