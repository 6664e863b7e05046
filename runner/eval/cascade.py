"""The worst case across the attack suite, as a cascade.

Attacks at the threat model (same norm, eps <= threat eps) are ordered cheap to expensive. In
``cascade`` mode each attacks only the examples that are still correct, so an attack's row is the
accuracy *after the cascade up to and including it* (cumulative, non-increasing) and ``broken``
counts the examples it broke first. In ``independent`` mode each attacks every clean-correct
example, so its row is its own accuracy. In both modes the worst case per example is the lowest
margin any attack reached: an example is robust if no attack fooled it, and ``broken_by`` names the
first attack (in cascade order) that did. Attacks outside the threat model (another norm or a larger
eps) always run independently and stay out of the worst case.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from runner import faults
from runner.attacks.runner import generate
from runner.device import generator
from runner.eval.common import (
    attack_cost,
    fast_layout,
    logits_of,
    margins,
    perturbation_norm,
    progress,
)
from runner.passes import PassCounter

if TYPE_CHECKING:
    from runner.compile import Threat
    from runner.eval.resume import EvalCheckpoint
    from runner.spec.attacks import AttackBase


@dataclass
class SuiteResult:
    examples: pd.DataFrame  # long: (example, attack) rows incl. "clean" and "worst_case"
    info: dict[str, dict[str, Any]]  # per attack: scope, attacked, broken, seconds
    at_threat: list[str]  # names in the worst case, in cascade order


def _frame(name, y, pred, correct, margin, dist, attacked, broken_by=None) -> pd.DataFrame:
    n = len(y)
    return pd.DataFrame(
        {
            "example": np.arange(n),
            "attack": name,
            "label": y,
            "pred": pred,
            "correct": correct,
            "attacked": attacked,
            "margin": margin.astype(np.float32),
            "distance": dist.astype(np.float32),
            "broken_by": broken_by if broken_by is not None else np.full(n, "", dtype=object),
        }
    )


def run_suite(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: Sequence[AttackBase],
    threat: Threat,
    num_classes: int,
    batch_size: int,
    mode: str = "cascade",
    log: Callable[[str], None] = print,
    seed: int = 0,
    checkpoint: EvalCheckpoint | None = None,
) -> SuiteResult:
    """Run the suite; per-example outcomes and per-attack bookkeeping.

    With ``checkpoint``, the state after each attack is saved and a rerun continues after the
    last saved attack (each attack is seeded by its position, so the result is the same).
    Each attack's cost is recorded in examples forwarded and backwarded (``forward_passes``,
    ``backward_passes``); on a CPU the model runs channels-last meanwhile (:func:`fast_layout`).
    """
    model.eval()
    counter = PassCounter(model)
    try:
        with fast_layout(model, x):
            return _run_suite(model, x, y, attacks, threat, num_classes, batch_size, mode, log,
                              seed, checkpoint, counter)  # fmt: skip
    finally:
        counter.close()


def _run_suite(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: Sequence[AttackBase],
    threat: Threat,
    num_classes: int,
    batch_size: int,
    mode: str,
    log: Callable[[str], None],
    seed: int,
    checkpoint: EvalCheckpoint | None,
    counter: PassCounter,
) -> SuiteResult:
    lo, hi = threat.pixel_range
    cpu = lambda t: t.detach().cpu().numpy()  # noqa: E731
    y_np = cpu(y)
    clean_logits = logits_of(model, x, batch_size)
    clean_pred = clean_logits.argmax(1)
    clean_ok = clean_pred == y
    frames = [
        _frame("clean", y_np, cpu(clean_pred), cpu(clean_ok), cpu(margins(clean_logits, y)),
               np.zeros(len(y)), np.zeros(len(y), dtype=bool))
    ]  # fmt: skip
    inside = [a for a in attacks if threat.covers(a)]
    inside = sorted(inside, key=attack_cost)  # stable: spec order among equals
    outside = [a for a in attacks if not threat.covers(a)]
    art_classifier = None
    if any(a.engine == "art" for a in attacks):
        from runner.attacks.art_attacks import make_classifier

        art_classifier = make_classifier(model, tuple(x.shape[1:]), num_classes, (lo, hi), x.device)
    # worst-case state per example
    alive = clean_ok.clone()
    w_margin = margins(clean_logits, y)
    w_pred = clean_pred.clone()
    w_dist = torch.zeros(len(y), device=x.device)
    broken_by = np.where(cpu(clean_ok), "", "clean").astype(object)
    info: dict[str, dict[str, Any]] = {}
    done = 0
    saved = checkpoint.load_suite() if checkpoint is not None else None
    if saved is not None:
        done, frames, state, info = saved
        dev = x.device
        alive = torch.as_tensor(state["correct"].to_numpy(bool), device=dev)
        w_pred = torch.as_tensor(state["pred"].to_numpy(), device=dev)
        w_margin = torch.as_tensor(state["margin"].to_numpy(), device=dev).to(w_margin.dtype)
        w_dist = torch.as_tensor(state["distance"].to_numpy(), device=dev).to(w_dist.dtype)
        broken_by = state["broken_by"].to_numpy(object).copy()
        log(f"resumed the attack suite after {done} finished attack(s)")
    for i, cfg in enumerate(progress(inside + outside, "attacks")):
        if i < done:
            continue
        in_suite = i < len(inside)
        scope = mode if in_suite else "off_threat"
        todo = alive if scope == "cascade" else clean_ok
        idx = todo.nonzero().squeeze(1)
        t0 = time.perf_counter()
        f0, b0 = counter.forward, counter.backward
        gen = generator(seed + i, x.device)
        np.random.seed(seed + i)  # ART draws its random starts from the global streams:
        torch.manual_seed(seed + i)  # seed them per attack so a resumed suite matches
        x_adv = generate(model, x[idx], y[idx], cfg, (lo, hi), num_classes, art_classifier, gen)
        passes = {"forward_passes": counter.forward - f0, "backward_passes": counter.backward - b0}
        logits = logits_of(model, x_adv, batch_size)
        pred = logits.argmax(1) if len(idx) else clean_pred[idx]
        m = margins(logits, y[idx]) if len(idx) else w_margin[idx]
        dist = perturbation_norm(x[idx], x_adv, cfg.norm)
        fooled = pred != y[idx]
        attacked = torch.zeros(len(y), dtype=torch.bool, device=x.device)
        attacked[idx] = True
        broken = 0
        if in_suite:
            newly = idx[fooled & alive[idx]]
            broken = len(newly)
            broken_by[cpu(newly)] = cfg.name
            alive[newly] = False
            lower = m < w_margin[idx]
            upd = idx[lower]
            w_margin[upd], w_pred[upd], w_dist[upd] = m[lower], pred[lower], dist[lower]
        if scope == "cascade":  # cumulative state after this attack
            row_pred, row_ok, row_m, row_d = w_pred, alive, w_margin, w_dist
        else:  # this attack's own outcome; clean-wrong examples stay wrong
            row_pred, row_ok = clean_pred.clone(), torch.zeros_like(clean_ok)
            row_m, row_d = margins(clean_logits, y), torch.zeros(len(y), device=x.device)
            row_pred[idx], row_ok[idx], row_m[idx], row_d[idx] = pred, ~fooled, m, dist
        frames.append(
            _frame(cfg.name, y_np, cpu(row_pred), cpu(row_ok), cpu(row_m), cpu(row_d),
                   cpu(attacked))
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        info[cfg.name] = {
            "scope": scope,
            "attacked": int(len(idx)),
            "fooled": int(fooled.sum()),
            "broken": broken,
            "seconds": round(seconds, 3),
            **passes,
        }
        log(
            f"{cfg.name} ({scope}): attacked {len(idx)}, fooled {int(fooled.sum())}, "
            f"accuracy {float(row_ok.float().mean()):.4f} [{seconds:.1f}s]"
        )
        faults.reached(f"attack:{cfg.name}")
        if checkpoint is not None:
            state = _frame("state", y_np, cpu(w_pred), cpu(alive), cpu(w_margin), cpu(w_dist),
                           cpu(clean_ok), broken_by.copy())  # fmt: skip
            checkpoint.save_suite(i + 1, frames, state, info)
    if inside:
        frames.append(
            _frame("worst_case", y_np, cpu(w_pred), cpu(alive), cpu(w_margin), cpu(w_dist),
                   cpu(clean_ok), broken_by)
        )  # fmt: skip
    examples = pd.concat(frames, ignore_index=True)
    # every row carries the example's worst-case breaker, for easy filtering
    examples["broken_by"] = np.tile(broken_by, len(frames)) if inside else ""
    return SuiteResult(examples, info, [a.name for a in inside])
