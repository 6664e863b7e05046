"""Native Linf Square attack (Andriushchenko et al. 2020): black-box, score-based, query-limited.

Follows the authors' reference (as used in AutoAttack): vertical-stripe initialisation, margin
loss, one random square window per iteration whose size follows the p schedule (p_init 0.8,
halved at queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000), only still-unbroken examples
are queried. It uses forward passes only, which makes it the test for gradient masking: a
black-box attack that beats the white-box ones means the gradients are lying.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_SCHEDULE = [(10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
             (6000, 128), (8000, 256)]  # fmt: skip


def p_selection(p_init: float, it: int) -> float:
    div = 1
    for start, d in _SCHEDULE:
        if it > start:
            div = d * 2
    return p_init / div


@torch.no_grad()
def _margin(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    logits = model(x)
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], float("-inf")).amax(1)


@torch.no_grad()
def square_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    queries: int = 5000,
    p_init: float = 0.8,
    lo: float = 0.0,
    hi: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial examples within the Linf eps-ball (the lowest-margin point where none fools)."""
    x = x.detach()
    _, c, h, w = x.shape

    def rand_sign(*shape: int) -> Tensor:
        r = torch.randint(0, 2, shape, device=x.device, generator=generator)
        return (2 * r - 1).to(x.dtype)

    x_best = (x + eps * rand_sign(len(x), c, 1, w)).clamp(lo, hi)
    margin = _margin(model, x_best, y)
    n_features = c * h * w
    for it in range(queries - 1):
        idx = (margin > 0).nonzero().squeeze(1)
        if len(idx) == 0:
            break
        xc, xb = x[idx], x_best[idx]
        p = p_selection(p_init, it)
        s = min(max(int(round(math.sqrt(p * n_features / c))), 1), h - 1)
        vh = int(torch.randint(0, h - s + 1, (1,), generator=generator, device=x.device))
        vw = int(torch.randint(0, w - s + 1, (1,), generator=generator, device=x.device))
        new = xb.clone()
        new[:, :, vh : vh + s, vw : vw + s] += 2.0 * eps * rand_sign(1, c, 1, 1)
        new = torch.minimum(torch.maximum(new, xc - eps), xc + eps).clamp(lo, hi)
        m = _margin(model, new, y[idx])
        better = m < margin[idx]
        margin[idx] = torch.where(better, m, margin[idx])
        x_best[idx] = torch.where(better.view(-1, 1, 1, 1), new, xb)
    return x_best
