"""Native APGD (Croce & Hein 2020): step-size schedule with checkpoints, momentum, CE/DLR losses.

Follows the authors' reference implementation (``autopgd_base.py``): initial step 2*eps, momentum
0.75, checkpoints p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), and at each
checkpoint the step is halved (and the iterate reset to the best point) where the loss rose in
fewer than rho = 75% of the steps since the last checkpoint, or where the step was not reduced
last time and the best loss has not improved. Every iterate is projected into the eps-ball and the
pixel range (:func:`runner.attacks.native.project`). Targeted runs attack the top-k other classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.attacks.native import _flat_norm, project, random_start
from runner.errors import AdvrunError

_TINY = 1e-12


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio, per example (higher = closer to misclassified)."""
    srt, ind = logits.sort(dim=1)
    u = torch.arange(len(y), device=y.device)
    top_is_y = (ind[:, -1] == y).to(logits.dtype)
    return -(logits[u, y] - srt[:, -2] * top_is_y - srt[:, -1] * (1.0 - top_is_y)) / (
        srt[:, -1] - srt[:, -3] + _TINY
    )


def dlr_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR (needs at least 4 classes)."""
    srt, _ = logits.sort(dim=1)
    u = torch.arange(len(y), device=y.device)
    return -(logits[u, y] - logits[u, target]) / (
        srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + _TINY
    )


def _loss(logits: Tensor, y: Tensor, loss: str, target: Tensor | None) -> Tensor:
    if target is None:
        return F.cross_entropy(logits, y, reduction="none") if loss == "ce" else dlr_loss(logits, y)
    if loss == "ce":
        return -F.cross_entropy(logits, target, reduction="none")
    return dlr_targeted_loss(logits, y, target)


def checkpoints(steps: int) -> list[int]:
    """Iterations at which the step size may be halved."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({int(round(q * steps)) for q in p[1:] if q <= 1})


def _loss_grad(model, x_adv, y, loss, target) -> tuple[Tensor, Tensor, Tensor]:
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    per = _loss(logits, y, loss, target)
    (grad,) = torch.autograd.grad(per.sum(), x_adv)
    return grad.detach(), per.detach(), logits.detach()


def _single_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str,
    steps: int,
    loss: str,
    target: Tensor | None,
    lo: float,
    hi: float,
    rho: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """One APGD run; returns (best adversarial or best-loss point, fooled mask)."""
    shape = (-1, *([1] * (x.dim() - 1)))
    x_adv = x + random_start(x, eps, norm, lo, hi, generator)
    step = torch.full((len(x), *([1] * (x.dim() - 1))), 2.0 * eps, device=x.device, dtype=x.dtype)
    grad, loss_best, logits = _loss_grad(model, x_adv, y, loss, target)
    fooled = logits.argmax(1) != y
    x_best_adv = x_adv.clone()
    x_best, grad_best = x_adv.clone(), grad.clone()
    checks = set(checkpoints(steps))
    last_check = 0
    improved = torch.zeros(
        len(x), device=x.device
    )  # steps since the last checkpoint where loss rose
    loss_prev = loss_best.clone()
    reduced_last = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    loss_best_last = loss_best.clone()
    x_old = x_adv.clone()
    for i in range(steps):
        with torch.no_grad():
            a = 0.75 if i > 0 else 1.0
            if norm == "linf":
                z = x_adv + step * grad.sign()
            else:
                z = x_adv + step * grad / _flat_norm(grad)
            z = x + project(x, z - x, eps, norm, lo, hi)
            x_new = x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_old)
            x_new = x + project(x, x_new - x, eps, norm, lo, hi)
            x_old, x_adv = x_adv, x_new
        grad, per, logits = _loss_grad(model, x_adv, y, loss, target)
        with torch.no_grad():
            now = logits.argmax(1) != y
            x_best_adv[now] = x_adv[now]
            fooled |= now
            improved += (per > loss_prev).to(improved.dtype)
            loss_prev = per
            better = per > loss_best
            x_best[better], grad_best[better], loss_best[better] = (
                x_adv[better],
                grad[better],
                per[better],
            )
            if i + 1 in checks:
                span = i + 1 - last_check
                oscillating = improved <= span * rho
                stalled = ~reduced_last & (loss_best_last >= loss_best)
                halve = oscillating | stalled
                reduced_last = halve
                loss_best_last = loss_best.clone()
                step[halve] /= 2.0
                x_adv[halve] = x_best[halve]
                grad[halve] = grad_best[halve]
                improved.zero_()
                last_check = i + 1
    # Examples never fooled return their best-loss point (the strongest point found).
    out = torch.where(fooled.view(shape), x_best_adv, x_best)
    return out.detach(), fooled


def apgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str = "linf",
    steps: int = 100,
    loss: str = "ce",
    targeted: bool = False,
    n_targets: int = 9,
    restarts: int = 1,
    lo: float = 0.0,
    hi: float = 1.0,
    rho: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """APGD (or APGD-T over the top ``n_targets`` classes); restarts attack only unbroken examples."""
    x, y = x.detach(), y.detach()
    best = x.clone()
    with torch.no_grad():
        logits = model(x)
    classes = logits.shape[1]
    if loss == "dlr" and classes < (4 if targeted else 3):
        raise AdvrunError(
            f"APGD with the {'targeted ' if targeted else ''}DLR loss needs at least "
            f"{4 if targeted else 3} classes, this model has {classes}; use loss: ce"
        )
    alive = logits.argmax(1) == y
    targets = None
    if targeted:  # the k most likely classes other than y, per example: shape (k, B)
        k = min(n_targets, classes - 1)
        targets = logits.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices.t()
    rounds = [(r, t) for t in range(len(targets) if targeted else 1) for r in range(restarts)]
    for _, t in rounds:
        idx = alive.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        tgt = targets[t, idx] if targets is not None else None
        adv, fooled = _single_run(
            model, x[idx], y[idx], eps, norm, steps, loss, tgt, lo, hi, rho, generator
        )
        best[idx] = adv  # fooled examples keep a fooling point; the rest the strongest point
        alive[idx[fooled]] = False
    return best
