"""Run one resolved attack config on a set of examples, native or through ART.

Every result is checked against (or, for minimal-norm attacks, projected into) the attack's
threat model: eps-ball of its norm and the pixel range.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from runner.attacks import native
from runner.catalog import ATTACKS
from runner.errors import AdvrunError
from runner.spec.attacks import APGDAttack, AttackBase, FABAttack, SquareAttack


def _native_batch(model, xb, yb, cfg, lo, hi, gen) -> Tensor:
    kind = cfg.kind
    if kind == "fgsm":
        return native.fgsm(model, xb, yb, cfg.eps, cfg.norm, lo, hi)
    if kind == "pgd":
        return native.pgd(
            model, xb, yb, cfg.eps, cfg.step_size, cfg.steps, cfg.norm, lo, hi,
            cfg.random_start, cfg.restarts, generator=gen, early_exit=True,
        )  # fmt: skip
    if kind == "apgd":
        from runner.attacks.kernels.apgd import apgd

        return apgd(
            model, xb, yb, cfg.eps, cfg.norm, cfg.steps, cfg.loss, cfg.targeted,
            cfg.n_targets, cfg.restarts, lo, hi, generator=gen,
        )  # fmt: skip
    if kind == "fab":
        from runner.attacks.kernels.fab import fab_t

        return fab_t(model, xb, yb, cfg.eps, cfg.norm, cfg.steps, cfg.n_targets, lo, hi)
    if kind == "square":
        from runner.attacks.kernels.square import square_linf

        out = xb.clone()
        with torch.no_grad():
            alive = model(xb).argmax(1) == yb
        for r in range(cfg.restarts):  # each restart attacks only what is still unbroken
            idx = alive.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            adv = square_linf(model, xb[idx], yb[idx], cfg.eps, cfg.queries, cfg.p_init, lo, hi,
                              gen)  # fmt: skip
            out[idx] = adv
            if r + 1 < cfg.restarts:
                with torch.no_grad():
                    alive[idx] = model(adv).argmax(1) == yb[idx]
        return out
    if kind == "autoattack":
        return _standard_autoattack(model, xb, yb, cfg, lo, hi, gen)
    raise AdvrunError(f"attack kind '{kind}' has no native engine; use engine: art")


def standard_components(cfg: AttackBase) -> list[AttackBase]:
    """Croce & Hein 2020's standard AutoAttack: APGD-CE, APGD-T (DLR), FAB-T, Square (Linf)."""
    base = {"eps": cfg.eps, "norm": cfg.norm, "batch_size": cfg.batch_size, "engine": "native"}
    parts: list[AttackBase] = [
        APGDAttack(name=f"{cfg.name}/apgd-ce", kind="apgd", loss="ce", targeted=False,
                   n_targets=9, steps=100, restarts=1, **base),
        APGDAttack(name=f"{cfg.name}/apgd-t", kind="apgd", loss="dlr", targeted=True,
                   n_targets=9, steps=100, restarts=1, **base),
        FABAttack(name=f"{cfg.name}/fab-t", kind="fab", n_targets=9, steps=100, **base),
    ]  # fmt: skip
    if cfg.norm == "linf":  # the L2 standard version has no Square
        parts.append(
            SquareAttack(name=f"{cfg.name}/square", kind="square", queries=5000, p_init=0.8,
                         restarts=1, **base)
        )  # fmt: skip
    return parts


def _standard_autoattack(model, x, y, cfg, lo, hi, gen) -> Tensor:
    """The standard composition as a cascade: each part attacks only what is still correct."""
    x_adv = x.clone()
    with torch.no_grad():
        alive = model(x).argmax(1) == y
    for part in standard_components(cfg):
        idx = alive.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        adv = _native_batch(model, x[idx], y[idx], part, lo, hi, gen)
        adv = x[idx] + native.project(x[idx], adv - x[idx], cfg.eps, cfg.norm, lo, hi)
        x_adv[idx] = adv
        with torch.no_grad():
            alive[idx] = model(adv).argmax(1) == y[idx]
    return x_adv


def _art_generate(model, x, y, cfg, art_classifier) -> Tensor:
    attack = ATTACKS.get(cfg.kind)
    factory = attack.meta.get("art")
    if not factory:
        raise AdvrunError(f"attack kind '{cfg.kind}' has no ART engine; use engine: native")
    module, _, attr = factory.partition(":")
    import importlib

    make = getattr(importlib.import_module(module), attr)
    x_np = x.detach().cpu().numpy()
    y_np = y.detach().cpu().numpy().astype(np.int64)  # class indices; ART one-hot encodes them
    if isinstance(cfg, APGDAttack) and cfg.targeted:
        out = x_np.copy()
        with torch.no_grad():
            logits = model(x).scatter(1, y[:, None], float("-inf"))
        k = min(cfg.n_targets, logits.shape[1] - 1)
        targets = logits.topk(k, dim=1).indices.cpu().numpy()
        alive = np.ones(len(x_np), dtype=bool)
        for t in range(k):
            if not alive.any():
                break
            adv = make(art_classifier, cfg).generate(x=x_np[alive], y=targets[alive, t])
            out[alive] = adv
            pred = art_classifier.predict(adv, batch_size=cfg.batch_size).argmax(1)
            alive[np.flatnonzero(alive)[pred != y_np[alive]]] = False
        x_adv = out
    else:
        x_adv = make(art_classifier, cfg).generate(x=x_np, y=y_np)
    model.eval()  # ART may switch modes
    return torch.as_tensor(x_adv, dtype=x.dtype, device=x.device)


def generate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: AttackBase,
    pixel_range: tuple[float, float],
    num_classes: int,
    art_classifier=None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial examples for (x, y) under ``cfg``, within its threat model, on x's device."""
    lo, hi = pixel_range
    model.eval()
    if len(x) == 0:
        return x.clone()
    if cfg.engine == "native":
        bs = cfg.batch_size
        parts = [
            _native_batch(model, x[i : i + bs], y[i : i + bs], cfg, lo, hi, generator)
            for i in range(0, len(x), bs)
        ]
        x_adv = torch.cat(parts).detach()
    else:
        if art_classifier is None:
            from runner.attacks.art_attacks import make_classifier

            art_classifier = make_classifier(
                model, tuple(x.shape[1:]), num_classes, pixel_range, x.device
            )
        x_adv = _art_generate(model, x, y, cfg, art_classifier)
    if ATTACKS.get(cfg.kind).meta.get("minimal_norm"):
        # minimal-norm attacks (C&W, DeepFool, FAB) are not bounded by eps: evaluate their
        # perturbation projected into the threat model's ball
        x_adv = x + native.project(x, x_adv - x, cfg.eps, cfg.norm, lo, hi)
    _check_threat(x, x_adv, cfg, lo, hi)
    return x_adv


def _check_threat(x: Tensor, x_adv: Tensor, cfg: AttackBase, lo: float, hi: float) -> None:
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if cfg.norm == "linf" else d.norm(dim=1)
    slack = 1e-5 * max(1.0, hi - lo)
    if (
        not torch.isfinite(x_adv).all()
        or dist.max().item() > cfg.eps * (1 + 1e-5) + slack
        or x_adv.min().item() < lo - slack
        or x_adv.max().item() > hi + slack
    ):
        raise AdvrunError(
            f"attack '{cfg.name}' left its threat model (max {cfg.norm} "
            f"distance {dist.max().item():.4g} > eps {cfg.eps:.4g}, or pixels outside "
            f"[{lo}, {hi}]); refusing to report its accuracy"
        )
