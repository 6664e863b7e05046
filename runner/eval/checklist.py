"""The evaluation checklist (Carlini et al. 2019; Athalye et al. 2018): signs of a weak evaluation
or of gradient masking, each pass / warn / fail with the numbers behind it.

The probes are advrun's native attacks on a sample of the test examples, independent of the
spec's suite, so every run gets the same checks:

- iterative_vs_single_step: PGD-20 accuracy <= FGSM accuracy (an iterative attack that is weaker
  than one step means the loss surface is hiding the way).
- large_eps: PGD-50 without random start at eps = the whole pixel range (Linf) brings accuracy to
  chance or below (an unbounded attack must succeed).
- more_steps: doubling PGD's steps, or its restarts, moves accuracy by less than a point.
- black_box_vs_white_box: Square (forward passes only) is not stronger than PGD.
- gradients: loss gradients w.r.t. the input are finite and non-zero (ART's
  ``loss_gradient_check`` definition: all-zero, NaN or Inf), computed batched on the device.
- deterministic: the same input twice gives the same logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.attacks import native
from runner.device import generator
from runner.eval.common import logits_of

if TYPE_CHECKING:
    from runner.compile import Threat

POINT = 0.01  # one accuracy point
SQUARE_QUERIES = 500


def _item(check: str, status: str, detail: str, **evidence: float) -> dict[str, Any]:
    return {"check": check, "status": status, "detail": detail, "evidence": evidence}


def _acc(model: nn.Module, x: Tensor, y: Tensor, bs: int) -> float:
    return float((logits_of(model, x, bs).argmax(1) == y).float().mean())


def _batched(fn, x: Tensor, y: Tensor, bs: int) -> Tensor:
    return torch.cat([fn(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)])


def gradient_stats(model: nn.Module, x: Tensor, y: Tensor, bs: int) -> dict[str, float]:
    """Fractions of examples whose input gradient of the loss is all zero / not finite."""
    zero = bad = 0
    for i in range(0, len(x), bs):
        xb = x[i : i + bs].detach().requires_grad_(True)
        loss = F.cross_entropy(model(xb), y[i : i + bs], reduction="sum")
        (g,) = torch.autograd.grad(loss, xb)
        g = g.flatten(1)
        finite = torch.isfinite(g).all(1)
        bad += int((~finite).sum())
        zero += int((finite & (g.abs().amax(1) == 0)).sum())
    n = max(len(x), 1)
    return {"zero_fraction": zero / n, "nonfinite_fraction": bad / n, "n": float(len(x))}


def run_checklist(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat,
    num_classes: int,
    batch_size: int,
    n: int = 256,
    log: Callable[[str], None] = print,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """All checks on the first ``n`` examples; a list of {check, status, detail, evidence}."""
    model.eval()
    x, y = x[:n], y[:n]
    lo, hi = threat.pixel_range
    norm, eps = threat.norm, float(threat.eps)
    bs = batch_size
    out: list[dict[str, Any]] = []

    def pgd(e: float, steps: int, restarts: int = 1, rand: bool = True, step: float | None = None):
        gen = generator(seed, x.device)
        size = step if step is not None else 2.5 * e / steps
        return _batched(
            lambda xb, yb: native.pgd(model, xb, yb, e, size, steps, norm, lo, hi, rand, restarts,
                                      generator=gen),
            x, y, bs,
        )  # fmt: skip

    clean = _acc(model, x, y, bs)
    fgsm = _acc(model, _batched(lambda a, b: native.fgsm(model, a, b, eps, norm, lo, hi), x, y, bs),
                y, bs)  # fmt: skip
    step20 = 2.5 * eps / 20
    pgd20 = _acc(model, pgd(eps, 20, step=step20), y, bs)
    out.append(
        _item(
            "iterative_vs_single_step",
            "pass"
            if pgd20 <= fgsm + POINT / 2
            else "warn"
            if pgd20 <= fgsm + 2 * POINT
            else "fail",
            f"PGD-20 accuracy {pgd20:.3f} vs FGSM {fgsm:.3f}: an iterative attack should be at "
            "least as strong as a single step",
            pgd20=pgd20,
            fgsm=fgsm,
            clean=clean,
            eps=eps,
        )  # fmt: skip
    )
    big = (hi - lo) if norm == "linf" else (hi - lo) * math.sqrt(x[0].numel())
    large = _acc(model, pgd(big, 50, rand=False), y, bs)
    chance = 1.0 / num_classes
    out.append(
        _item(
            "large_eps",
            "pass" if large <= chance else "warn" if large <= 2 * chance else "fail",
            f"PGD-50 at eps {big:g} (any image reachable) leaves accuracy {large:.3f}; chance is "
            f"{chance:.3f}: an unbounded attack must succeed",
            accuracy=large,
            chance=chance,
            eps=big,
        )  # fmt: skip
    )
    pgd40 = _acc(model, pgd(eps, 40, step=step20), y, bs)
    pgd20x2 = _acc(model, pgd(eps, 20, restarts=2, step=step20), y, bs)
    delta = max(abs(pgd40 - pgd20), abs(pgd20x2 - pgd20))
    out.append(
        _item(
            "more_steps",
            "pass" if delta < POINT else "warn" if delta < 3 * POINT else "fail",
            f"doubling PGD steps (20 -> 40: {pgd20:.3f} -> {pgd40:.3f}) or restarts (1 -> 2: "
            f"{pgd20x2:.3f}) moves accuracy by {delta * 100:.1f} points (should be < 1)",
            pgd20=pgd20,
            pgd40=pgd40,
            pgd20_2restarts=pgd20x2,
            change=delta,
        )  # fmt: skip
    )
    white = min(pgd20, pgd40, pgd20x2, fgsm)
    square = _square_accuracy(model, x, y, eps, norm, lo, hi, num_classes, bs, seed)
    out.append(
        _item(
            "black_box_vs_white_box",
            "pass"
            if square >= white - POINT / 2
            else "warn"
            if square >= white - 2 * POINT
            else "fail",
            f"Square (black box, {SQUARE_QUERIES} queries) accuracy {square:.3f} vs best white-box "
            f"{white:.3f}: a black-box attack that is stronger means the gradients mislead",
            square=square,
            white_box=white,
        )  # fmt: skip
    )
    g = gradient_stats(model, x, y, bs)
    status = (
        "fail"
        if g["nonfinite_fraction"] > 0 or g["zero_fraction"] > 0.05
        else "warn"
        if g["zero_fraction"] > 0
        else "pass"
    )
    out.append(
        _item(
            "gradients",
            status,
            f"{g['zero_fraction']:.1%} of examples have an all-zero loss gradient and "
            f"{g['nonfinite_fraction']:.1%} a non-finite one (should both be 0)",
            **g,
        )
    )
    a, b = logits_of(model, x, bs), logits_of(model, x, bs)
    diff = float((a - b).abs().max()) if len(a) else 0.0
    same_pred = bool((a.argmax(1) == b.argmax(1)).all()) if len(a) else True
    scale = float(a.abs().max()) if len(a) else 1.0
    out.append(
        _item(
            "deterministic",
            "pass" if diff <= 1e-6 * max(scale, 1.0) else "warn" if same_pred else "fail",
            f"two forward passes of the same inputs differ by at most {diff:.3g} in the logits"
            + ("" if same_pred else " and change predictions (randomised model: use EOT attacks)"),
            max_logit_difference=diff,
            same_predictions=float(same_pred),
        )  # fmt: skip
    )
    for item in out:
        log(f"checklist {item['check']}: {item['status']} ({item['detail']})")
    return out


def _square_accuracy(model, x, y, eps, norm, lo, hi, num_classes, bs, seed) -> float:
    if norm == "linf":
        from runner.attacks.kernels.square import square_linf

        gen = generator(seed, x.device)
        x_adv = _batched(
            lambda a, b: square_linf(model, a, b, eps, SQUARE_QUERIES, 0.8, lo, hi, gen), x, y, bs
        )
    else:
        from runner.attacks.runner import generate
        from runner.attacks.square import SquareAttack

        cfg = SquareAttack(name="checklist_square", kind="square", engine="art", eps=eps,
                           norm=norm, queries=SQUARE_QUERIES, p_init=0.8, restarts=1,
                           batch_size=bs)  # fmt: skip
        x_adv = generate(model, x, y, cfg, (lo, hi), num_classes)
    return _acc(model, x_adv, y, bs)
