"""The two AutoAttack references of bench/attacks.py, per example and per stage.

- The original AutoAttack: Croce & Hein's code as packaged on PyPI (``pyautoattack==0.2.0``,
  import name ``pyautoattack``, no dependencies declared). Its attack files are those of
  fra31/auto-attack at a392200 (master) up to relative imports; its ``AutoAttack`` wrapper takes
  keyword arguments and logs through the ``auto-attack`` logger instead of printing. ``standard``
  runs APGD-CE (100 iterations, 1 restart), APGD-T (9 targets x 100), FAB-T (9 targets x 100)
  and Square (5000 queries), each on what the previous left; ``rand`` runs APGD-CE and APGD-DLR
  with 20 EoT iterations.
- torchattacks 3.5.1's ``AutoAttack``: the same composition with 10 APGD/FAB steps.

Both are bench extras (``make bench-install``), never runtime dependencies of advrun.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

ORIGINAL_STAGES = {
    "apgd-ce": "APGD-CE 100",
    "apgd-dlr": "APGD-DLR 100",
    "apgd-t": "APGD-T 9x100",
    "fab-t": "FAB-T 9x100",
    "square": "Square 5000",
}


@dataclass
class RefResult:
    """One reference's outcome on n examples."""

    seconds: float
    correct: np.ndarray  # bool per example: still correct after the attack
    stage: np.ndarray  # per example: "" (robust), "clean" or the stage that broke it
    warnings: list[str] = field(default_factory=list)
    stage_broken: dict[str, int] = field(default_factory=dict)
    x_adv: Tensor | None = None  # the adversarial input where it broke an example, else x
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _need(module: str, pin: str):
    try:
        return __import__(module)
    except ImportError:
        sys.exit(
            f"bench/attacks.py needs {module}: `make bench-install` (pip install --no-deps {pin})"
        )


def _inside(x: Tensor, x_adv: Tensor, eps: float, lo: float, hi: float, who: str) -> None:
    ok = float((x_adv - x).abs().amax()) <= eps + 1e-5
    if not (ok and float(x_adv.min()) >= lo - 1e-6 and float(x_adv.max()) <= hi + 1e-6):
        sys.exit(f"{who} left the threat model; its accuracy is not comparable")


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def original_autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, version: str,
                        pixel_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                        batch_size: int = 500) -> RefResult:  # fmt: skip
    """``pyautoattack.AutoAttack(version=...)``: per-example verdicts and the breaking stage.

    The stage comes from the verdicts the original itself makes: it calls ``get_logits`` on each
    attack's output to update its robust flags, and those calls are recorded here (the attacks
    and the verdicts are untouched). The recorded flags must equal its returned labels.
    """
    _need("pyautoattack", "pyautoattack==0.2.0")
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, eps=eps, norm="Linf", version=version, seed=seed, device=x.device)
    events: list[tuple[str, Tensor]] = []  # ("logits", predictions) / (stage, labels attacked)

    def judged(xb: Tensor) -> Tensor:
        out = model(xb)
        events.append(("logits", out.argmax(1)))
        return out

    seconds: dict[str, float] = {}

    def staged(attack, name_of):
        inner = attack.perturb

        def perturb(xb, yb, *a, **k):
            name = name_of()
            events.append((name, yb))
            t0 = time.perf_counter()
            adv = inner(xb, yb, *a, **k)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            return adv

        attack.perturb = perturb

    aa.get_logits = judged
    staged(aa.apgd, lambda: f"apgd-{aa.apgd.loss}")
    staged(aa.apgd_targeted, lambda: "apgd-t")
    staged(aa.fab, lambda: "fab-t" if aa.fab.targeted else "fab")
    staged(aa.square, lambda: "square")
    handler = _Warnings()
    logger = logging.getLogger("auto-attack")
    logger.addHandler(handler)
    torch.manual_seed(seed)  # a randomized model draws from the global generator
    try:
        t0 = time.perf_counter()
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
        secs = time.perf_counter() - t0
    finally:
        logger.removeHandler(handler)
    _inside(x, x_adv, eps, *pixel_range, "the original AutoAttack")
    correct = (y_adv == y).cpu().numpy()
    stage = _attribute(events, correct, y, -(-len(y) // batch_size))
    return RefResult(
        secs,
        correct,
        stage,
        handler.messages,
        _counts(stage),
        x_adv.detach(),
        {k: round(v, 2) for k, v in seconds.items()},
    )


def _attribute(events: list[tuple[str, Tensor]], correct: np.ndarray, y: Tensor,
               clean_batches: int) -> np.ndarray:  # fmt: skip
    """Replay the original's robust flags from its own verdicts (pyautoattack 0.2.0's order).

    Before its first attack it calls ``get_logits`` for its checks and then once per batch for
    the clean pass (the last ``clean_batches`` calls); each attack then runs on the robust
    examples in index order, batch by batch, and one ``get_logits`` call on its output judges it.
    """
    first = next((i for i, e in enumerate(events) if e[0] != "logits"), len(events))
    clean = torch.cat([p for _, p in events[first - clean_batches : first]]).cpu() == y.cpu()
    robust = clean.numpy().copy()
    stage = np.where(robust, "", "clean").astype(object)
    todo: list[int] = []
    name_now = None
    for i in range(first, len(events), 2):
        (name, yb), (_, pred) = events[i], events[i + 1]
        if name != name_now:  # a new attack: the examples robust now, in index order
            name_now, todo = name, list(np.flatnonzero(robust))
        idx, todo = todo[: len(yb)], todo[len(yb) :]
        for j, fooled in zip(idx, (pred != yb).cpu().numpy(), strict=True):
            if fooled:
                stage[j], robust[j] = name, False
    if ((stage == "") != correct).any():
        raise AssertionError("replayed verdicts disagree with the original's returned labels")
    return stage


def _counts(stage: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(stage[stage != ""], return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def torchattacks_autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float,
                            pixel_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                            channels_last: bool = False) -> tuple[RefResult, Tensor]:  # fmt: skip
    """``torchattacks.AutoAttack(version='standard', n_classes=10, seed=...)``; its verdict is
    one forward pass of the final adversarial inputs (also returned)."""
    torchattacks = _need("torchattacks", "torchattacks==3.5.1")
    aa = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10,
                                 seed=seed)  # fmt: skip
    if channels_last:  # the layout advrun's suite uses on a CPU (runner.eval.common.fast_layout)
        model.to(memory_format=torch.channels_last)
    torch.manual_seed(seed)
    try:
        t0 = time.perf_counter()
        x_adv = aa(x, y).detach()
        secs = time.perf_counter() - t0
    finally:
        model.to(memory_format=torch.contiguous_format)
    _inside(x, x_adv, eps, *pixel_range, "torchattacks' AutoAttack")
    with torch.no_grad():
        correct = (model(x_adv).argmax(1) == y).cpu().numpy()
    stage = np.where(correct, "", "autoattack").astype(object)
    return RefResult(secs, correct, stage, x_adv=x_adv), x_adv
