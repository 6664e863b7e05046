"""Native APGD (Croce & Hein 2020): step-size schedule with checkpoints, momentum, CE/DLR losses.

Follows the authors' reference implementation (``autopgd_base.py``): initial step 2*eps, momentum
0.75, checkpoints p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), and at each
checkpoint the step is halved (and the iterate reset to the best point) where the loss rose in
fewer than rho = 75% of the steps since the last checkpoint, or where the step was not reduced
last time and the best loss has not improved. Every iterate is projected into the eps-ball and the
pixel range (:func:`runner.attacks.native.project`). Targeted runs attack the top-k other classes.
``eot_iter`` > 1 averages each step's gradient and loss over that many passes of a randomized
model (expectation over transformation, Athalye et al. 2018; the reference's ``eot_iter``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.attacks.native import _flat_norm, compact_every, project, random_start
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


def _loss_grad(model, x_adv, y, loss, target, eot_iter=1) -> tuple[Tensor, Tensor, Tensor]:
    """Input gradient and per-example loss, each averaged over ``eot_iter`` passes, and the
    fraction of the passes that misclassify x_adv (1.0 or 0.0 with one pass).

    The original AutoAttack averages the gradient but takes the loss (for its best point and
    step-size checkpoints) and the prediction of its last pass only; the average of the
    passes' losses is the loss whose gradient the step follows, and estimates it with
    ``eot_iter`` times less variance."""
    x_adv = x_adv.detach().requires_grad_(True)
    grad = per = wrong = None
    for _ in range(eot_iter):
        logits = model(x_adv)
        p = _loss(logits, y, loss, target)
        (g,) = torch.autograd.grad(p.sum(), x_adv)
        w = (logits.detach().argmax(1) != y).float()
        if grad is None:
            grad, per, wrong = g, p.detach(), w
            if eot_iter > 1:  # summed in float32: a half-precision sum of many passes overflows
                grad, per = grad.float(), per.float()
        else:
            grad, per, wrong = grad + g.float(), per + p.detach().float(), wrong + w
    if eot_iter > 1:
        dtype = x_adv.dtype
        grad, per, wrong = (
            (grad / eot_iter).to(dtype),
            (per / eot_iter).to(p.dtype),
            wrong / eot_iter,
        )
    return grad.detach(), per, wrong


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
    early_exit: bool = True,
    eot_iter: int = 1,
) -> tuple[Tensor, Tensor]:
    """One APGD run; returns (adversarial point where fooled, else the best-loss point; score).

    The score of an example is the fraction of the ``eot_iter`` passes that misclassified its
    returned point (1.0: fooled; with one pass 1.0 or 0.0). With EoT (a randomized model) the
    returned adversarial point is the one that most passes misclassified, and an example counts
    as fooled (and leaves the batch) only where all of them did.

    With ``early_exit`` an example leaves the batch once it is misclassified, keeping that point:
    every other example follows exactly the trajectory it would follow without early exit (each
    example's step size, momentum and checkpoints are its own), so the set of fooled examples is
    the same, for fewer passes. The step loop has no host sync but that removal.

    Kept whole (about 100 lines): it is the attack's kernel, one step loop whose per-example
    state (iterate, momentum, step size, checkpoints) is updated and shrunk together; split up,
    that state would travel between functions and the order of the updates, which follows the
    reference (Croce & Hein 2020, Algorithm 1), would be harder to check.
    """
    n = len(x)
    shape = (-1, *([1] * (x.dim() - 1)))
    out = x.clone()
    score_out = torch.zeros(n, device=x.device, dtype=torch.float32)
    x_adv = x + random_start(x, eps, norm, lo, hi, generator)
    grad, loss_best, wrong = _loss_grad(model, x_adv, y, loss, target, eot_iter)
    s: dict[str, Tensor] = {  # per-example state, shrunk together when examples leave
        "rows": torch.arange(n, device=x.device),
        "x": x,
        "y": y,
        "x_adv": x_adv,
        "x_old": x_adv.clone(),
        "grad": grad,
        "step": torch.full((n, *([1] * (x.dim() - 1))), 2.0 * eps, device=x.device, dtype=x.dtype),
        "score": wrong,  # fooled fraction of x_best_adv (EoT passes that misclassify it)
        "x_best_adv": x_adv.clone(),
        "x_best": x_adv.clone(),
        "grad_best": grad.clone(),
        "loss_best": loss_best,
        "loss_prev": loss_best.clone(),
        "loss_best_last": loss_best.clone(),
        # steps since the last checkpoint where the loss rose
        "improved": torch.zeros(n, device=x.device),
        "reduced_last": torch.zeros(n, dtype=torch.bool, device=x.device),
    }
    if target is not None:
        s["target"] = target
    checks = set(checkpoints(steps))
    last_check = 0
    every = compact_every(x.device)
    for i in range(steps):
        if early_exit and i % every == 0:
            done = s["score"] >= 1.0
            if bool(done.any()):  # the one host sync of the loop, every `every` steps
                rows = s["rows"][done]
                out[rows], score_out[rows] = s["x_best_adv"][done], 1.0
                keep = (~done).nonzero().squeeze(1)
                s = {k: v[keep] for k, v in s.items()}
                if len(keep) == 0:
                    return out, score_out
        xs, x_adv, grad, step = s["x"], s["x_adv"], s["grad"], s["step"]
        with torch.no_grad():
            a = 0.75 if i > 0 else 1.0
            if norm == "linf":
                z = x_adv + step * grad.sign()
            else:
                z = x_adv + step * grad / _flat_norm(grad)
            z = xs + project(xs, z - xs, eps, norm, lo, hi)
            x_new = x_adv + a * (z - x_adv) + (1 - a) * (x_adv - s["x_old"])
            x_new = xs + project(xs, x_new - xs, eps, norm, lo, hi)
            s["x_old"], x_adv = x_adv, x_new
        grad, per, wrong = _loss_grad(model, x_adv, s["y"], loss, s.get("target"), eot_iter)
        with torch.no_grad():
            # the point most passes misclassify (ties: the later); with one pass, the latest
            # fooling point, as in the reference
            now = (wrong > 0) & (wrong >= s["score"])
            s["x_best_adv"] = torch.where(now.view(shape), x_adv, s["x_best_adv"])
            s["score"] = torch.maximum(s["score"], wrong)
            s["improved"] = s["improved"] + (per > s["loss_prev"]).to(x.dtype)
            s["loss_prev"] = per
            better = per > s["loss_best"]
            s["x_best"] = torch.where(better.view(shape), x_adv, s["x_best"])
            s["grad_best"] = torch.where(better.view(shape), grad, s["grad_best"])
            s["loss_best"] = torch.where(better, per, s["loss_best"])
            if i + 1 in checks:
                span = i + 1 - last_check
                oscillating = s["improved"] <= span * rho
                stalled = ~s["reduced_last"] & (s["loss_best_last"] >= s["loss_best"])
                halve = (oscillating | stalled).view(shape)
                s["reduced_last"] = oscillating | stalled
                s["loss_best_last"] = s["loss_best"].clone()
                step = torch.where(halve, step / 2.0, step)
                x_adv = torch.where(halve, s["x_best"], x_adv)
                grad = torch.where(halve, s["grad_best"], grad)
                s["improved"] = torch.zeros_like(s["improved"])
                last_check = i + 1
            s["x_adv"], s["grad"], s["step"] = x_adv, grad, step
    # examples never fooled return their best-loss point (the strongest point found)
    rows = s["rows"]
    out[rows] = torch.where((s["score"] > 0).view(shape), s["x_best_adv"], s["x_best"])
    score_out[rows] = s["score"]
    return out.detach(), score_out


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
    early_exit: bool = True,
    eot_iter: int = 1,
) -> Tensor:
    """APGD (or APGD-T over the top ``n_targets`` classes, one after the other).

    Each target and restart attacks only the examples still unbroken; with ``early_exit`` an
    example also leaves a run as soon as it is misclassified (:func:`_single_run`). With
    ``eot_iter`` > 1 (a randomized model: the original AutoAttack's ``eot_iter``) every step
    averages the gradient and the loss over that many passes; an example is unbroken until all
    passes misclassify it, and a later run's point replaces an earlier one where at least as
    many of its passes did."""
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
    score = torch.zeros(len(x), device=x.device, dtype=torch.float32)  # fooled fraction of best
    rounds = [(r, t) for t in range(len(targets) if targeted else 1) for r in range(restarts)]
    for _, t in rounds:
        idx = alive.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        tgt = targets[t, idx] if targets is not None else None
        adv, got = _single_run(
            model, x[idx], y[idx], eps, norm, steps, loss, tgt, lo, hi, rho, generator,
            early_exit, eot_iter,
        )  # fmt: skip
        # fooled examples keep a fooling point, the rest the strongest point (with one pass,
        # always the latest run's: an unbroken example's score is 0)
        take = got >= score[idx]
        best[idx[take]] = adv[take]
        score[idx] = torch.maximum(score[idx], got)
        alive[idx[got >= 1.0]] = False
    return best
