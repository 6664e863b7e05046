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


def eot_grad(
    model: nn.Module, x_adv: Tensor, y: Tensor, loss_fn=None, eot_iter: int = 1
) -> tuple[Tensor, Tensor]:
    """The input gradient averaged over ``eot_iter`` forward/backward passes (expectation over
    transformation, Athalye et al. 2018, for a model whose forward pass is random), and per
    example the fraction of those passes that misclassify x_adv (1.0 or 0.0 with one pass).

    The passes run one after the other, as in the original AutoAttack's ``eot_iter``: a model
    that draws one random transform per call (not per example) gets one draw per pass.
    """
    grad, logits = input_grad(model, x_adv, y, loss_fn)
    wrong = (logits.argmax(1) != y).float()
    if eot_iter == 1:
        return grad, wrong
    total = grad.float()  # summed in float32: a half-precision sum of many passes overflows
    for _ in range(eot_iter - 1):
        g, logits = input_grad(model, x_adv, y, loss_fn)
        total += g.float()
        wrong += (logits.argmax(1) != y).float()
    return (total / eot_iter).to(grad.dtype), wrong / eot_iter


@torch.no_grad()
def fooled_fraction(model: nn.Module, x_adv: Tensor, y: Tensor, eot_iter: int = 1) -> Tensor:
    """Per example, the fraction of ``eot_iter`` forward passes that misclassify x_adv."""
    wrong = torch.zeros(len(y), device=x_adv.device, dtype=torch.float32)
    for _ in range(eot_iter):
        wrong += (model(x_adv).argmax(1) != y).float()
    return wrong / eot_iter


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
    return fgsm_step(x, grad, eps, norm, lo, hi)


def fgsm_step(x: Tensor, grad: Tensor, eps: float, norm: str, lo: float, hi: float) -> Tensor:
    """FGSM's point from a loss gradient at x already computed (the checklist shares one)."""
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
    early_exit: bool = False,
    eot_iter: int = 1,
) -> Tensor:
    """PGD (Madry et al. 2018), keeping per example the restart that fools the model (or the last).

    ``eps`` and ``step_size`` may be per-example tensors broadcastable to x (eps warm-up, curves).
    ``early_exit`` (evaluation; training wants every step) stops attacking an example at the
    first point that fools the model and returns that point: the other examples' trajectories
    are unchanged, so it fools every example the full run fools at its last step, and those it
    fooled on the way, for fewer passes.

    ``eot_iter`` > 1 (a randomized model) averages each step's gradient over that many passes
    (:func:`eot_grad`); an example then counts as fooled only where every one of the passes
    misclassifies it, and a restart replaces another's point where more of its passes do.
    """
    if early_exit:
        return _pgd_early_exit(
            model, x, y, eps, step_size, steps, norm, lo, hi, rand_init, restarts, loss_fn,
            generator, eot_iter,
        )  # fmt: skip
    x = x.detach()
    best = x.clone()
    score = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)  # fooled fraction of best
    for _ in range(restarts):
        delta = random_start(x, eps, norm, lo, hi, generator) if rand_init else torch.zeros_like(x)
        for _ in range(steps):
            grad, _ = eot_grad(model, x + delta, y, loss_fn, eot_iter)
            delta = project(x, delta + _step(grad, step_size, norm), eps, norm, lo, hi)
        x_adv = (x + delta).detach()
        if restarts == 1:
            return x_adv
        now = fooled_fraction(model, x_adv, y, eot_iter)
        take = now >= score  # keep a fooling restart once found (ties: the later one)
        best[take] = x_adv[take]
        score = torch.maximum(score, now)
    return best


def compact_every(device: torch.device) -> int:
    """Steps between two removals of fooled examples from an attack's batch.

    A removal needs their count on the host (a sync): free on a CPU, a pipeline stall on an
    accelerator, where a fooled example then rides along for at most a few more steps."""
    return 1 if device.type == "cpu" else 8


def rows(t: float | Tensor, idx: Tensor, n: int) -> float | Tensor:
    """Rows ``idx`` of a per-example tensor (first dimension n); scalars unchanged."""
    return t[idx] if isinstance(t, Tensor) and t.dim() and t.shape[0] == n else t


def _pgd_early_exit(
    model, x, y, eps, step_size, steps, norm, lo, hi, rand_init, restarts, loss_fn, generator,
    eot_iter=1,
) -> Tensor:  # fmt: skip
    x = x.detach()
    n = len(x)
    out = x.clone()
    alive = torch.ones(n, dtype=torch.bool, device=x.device)
    # with EoT, per example the fooled fraction of its point in ``out`` (restarts keep the best)
    score = torch.zeros(n, device=x.device, dtype=torch.float32)
    every = compact_every(x.device)
    for r in range(restarts):
        idx = alive.nonzero().squeeze(1)  # each restart attacks the examples still unbroken
        if len(idx) == 0:
            break
        xs, ys = x[idx], y[idx]
        e, a = rows(eps, idx, n), rows(step_size, idx, n)
        # drawn for the whole batch, as without early exit: the same seed, the same start
        delta = random_start(x, eps, norm, lo, hi, generator)[idx] if rand_init else 0 * xs
        for i in range(steps):
            grad, wrong = eot_grad(model, xs + delta, ys, loss_fn, eot_iter)
            if i % every == 0:  # the pass's logits say whether the current point fools already
                fooled = wrong >= 1.0  # with EoT: every pass misclassifies it
                if bool(fooled.any()):  # the loop's one host sync
                    out[idx[fooled]] = (xs + delta)[fooled]
                    alive[idx[fooled]] = False
                    keep = (~fooled).nonzero().squeeze(1)
                    m = len(idx)
                    idx, xs, ys = idx[keep], xs[keep], ys[keep]
                    delta, grad = delta[keep], grad[keep]
                    e, a = rows(e, keep, m), rows(a, keep, m)
                    if len(idx) == 0:
                        break
            delta = project(xs, delta + _step(grad, a, norm), e, norm, lo, hi)
        else:
            _settle_restart(model, out, alive, score, idx, (xs + delta).detach(), ys, eot_iter,
                            compare=eot_iter > 1 and r > 0, last=r + 1 == restarts)  # fmt: skip
    return out


def _settle_restart(model, out, alive, score, idx, final, ys, eot_iter, compare, last) -> None:
    """A restart's last points for its survivors ``idx``, in place: they replace ``out``'s (with
    EoT after the first restart: where as many passes or more misclassify them); unless it was
    the last restart, examples now fooled (by every EoT pass) leave ``alive``."""
    if last and not compare:
        out[idx] = final
        return
    now = fooled_fraction(model, final, ys, eot_iter)
    take = now >= score[idx] if compare else torch.ones_like(now, dtype=torch.bool)
    out[idx[take]] = final[take]
    score[idx] = torch.maximum(score[idx], now)
    alive[idx[now >= 1.0]] = False


def first_fooled(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    start: Tensor,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    lo: float = 0.0,
    hi: float = 1.0,
) -> Tensor:
    """PGD from ``start`` recording, per example, the first point of its trajectory that the
    model misclassifies: 0 for the start, k after k steps, ``steps + 1`` where none does.

    An example leaves the batch at that point (early exit), so one run of ``steps`` answers
    every shorter run from the same start too: PGD-k fools exactly the examples with an index
    <= k, and the others' trajectories do not depend on who left. The last point costs one
    forward pass; no other pass is spent on an example already fooled (on a CPU; on an
    accelerator a fooled example rides along for at most :func:`compact_every` steps).
    """
    x = x.detach()
    at = torch.full((len(x),), steps + 1, dtype=torch.long, device=x.device)
    idx = torch.arange(len(x), device=x.device)
    xs, ys, delta = x, y, start.detach()
    every = compact_every(x.device)
    for i in range(steps + 1):
        if i < steps:
            grad, logits = input_grad(model, xs + delta, ys)
        else:
            with torch.no_grad():
                logits = model(xs + delta)
        now = (logits.argmax(1) != ys) & (at[idx] > i)
        at[idx] = torch.where(now, i, at[idx])
        if i == steps:
            break
        if i % every == 0:
            left = at[idx] > i
            if not bool(left.all()):  # the loop's one host sync
                keep = left.nonzero().squeeze(1)
                idx, xs, ys, delta, grad = idx[keep], xs[keep], ys[keep], delta[keep], grad[keep]
                if len(idx) == 0:
                    break
        delta = project(xs, delta + _step(grad, step_size, norm), eps, norm, lo, hi)
    return at
