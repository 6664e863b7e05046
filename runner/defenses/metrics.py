"""The poisoning metrics: a defense's removals against the known poisons, and a model's clean
accuracy, source-class accuracy and attack success rate, each with its 95% interval.

Poisons are the positives: TP a removed poison, FP a removed clean example, FN a poison kept.
The intervals are :func:`runner.stats.bootstrap_ci` over the examples each share is a mean of
(precision: the removed examples; recall: the poisons; accuracies: the test images).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from runner.poisoning import sources, stamp
from runner.stats import bootstrap_ci
from runner.store import (
    BackdoorEffect,
    ClassFilter,
    FilterMetrics,
    Interval,
    PoisonFilter,
    PoisoningResult,
    ResultRow,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

    from runner.spec.poisoning import PoisoningSpec


def interval(hits: np.ndarray, n_boot: int) -> Interval:
    """The mean of a 0/1 vector with its bootstrap interval (NaN for an empty one)."""
    hits = np.asarray(hits, dtype=bool)
    lo, hi = bootstrap_ci(hits, n_boot)
    value = float(hits.mean()) if hits.size else float("nan")
    return Interval(value=value, n=int(hits.size), ci_low=lo, ci_high=hi)


def filter_metrics(
    removed: np.ndarray, poisoned: np.ndarray, labels: np.ndarray, defense: str, n_boot: int,
    **extra: Any,
) -> FilterMetrics:  # fmt: skip
    """TP/FP/TN/FN, precision, recall, F1 and removals per class of a boolean ``removed`` mask
    against the boolean ``poisoned`` mask (the training labels as trained on, ``labels``)."""
    removed, poisoned = np.asarray(removed, bool), np.asarray(poisoned, bool)
    tp = int((removed & poisoned).sum())
    fp = int((removed & ~poisoned).sum())
    fn = int((~removed & poisoned).sum())
    tn = int((~removed & ~poisoned).sum())
    precision = interval(poisoned[removed], n_boot)
    recall = interval(removed[poisoned], n_boot)
    p, r = precision.value, recall.value
    f1 = 2 * p * r / (p + r) if p + r > 0 else (0.0 if tp == 0 and (fp or fn) else float("nan"))
    per_class = [
        ClassFilter(
            label=int(c),
            examples=int((labels == c).sum()),
            poisons=int((poisoned & (labels == c)).sum()),
            removed=int((removed & (labels == c)).sum()),
            removed_poisons=int((removed & poisoned & (labels == c)).sum()),
        )
        for c in np.unique(labels)
    ]
    return FilterMetrics(
        defense=defense, examples=int(removed.size), removed=int(removed.sum()),
        tp=tp, fp=fp, tn=tn, fn=fn, precision=precision, recall=recall, f1=float(f1),
        per_class=per_class, **extra,
    )  # fmt: skip


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def effect(
    model: nn.Module, x: Tensor, y: Tensor, cfg: PoisoningSpec, pixel_range: tuple[float, float],
    batch_size: int, n_boot: int,
) -> BackdoorEffect:  # fmt: skip
    """Clean accuracy, source-class accuracy and ASR of ``model`` on the test set (x, y): the
    source classes are ``poisoning.source``, or every class but the target."""
    target = int(cfg.target)
    correct = (_predict(model, x, batch_size) == y).cpu().numpy()
    source = sources(y.cpu().numpy(), cfg)
    triggered = stamp(x[torch.as_tensor(source, device=x.device)], cfg, pixel_range)
    hit = (_predict(model, triggered, batch_size) == target).cpu().numpy()
    return BackdoorEffect(
        clean=interval(correct, n_boot),
        source=interval(correct[source], n_boot),
        asr=interval(hit, n_boot),
    )


def _row(attack: str, kind: str, norm: str, share: Interval) -> ResultRow:
    return ResultRow(attack=attack, kind=kind, norm=norm, eps=0.0, accuracy=share.value,
                     n=share.n, ci_low=share.ci_low, ci_high=share.ci_high,
                     scope="poisoning")  # fmt: skip


def result_rows(p: PoisoningResult) -> list[ResultRow]:
    """The poisoning rows of results.csv (scope ``poisoning``; ``accuracy`` holds each share):
    asr and source_accuracy of the evaluated model; with a defense, the same before it (the
    detector's model) and the filter's precision, recall, F1 and share removed."""
    after = p.after
    rows = [_row("asr", "backdoor", p.trigger, Interval(value=p.asr, n=p.n, ci_low=p.ci_low,
                                                         ci_high=p.ci_high))]  # fmt: skip
    if after is not None:
        rows.append(_row("source_accuracy", "backdoor", p.trigger, after.source))
    if p.before is not None:
        rows += [
            _row("clean_before", "backdoor", p.trigger, p.before.clean),
            _row("source_accuracy_before", "backdoor", p.trigger, p.before.source),
            _row("asr_before", "backdoor", p.trigger, p.before.asr),
        ]
    f = p.filter
    if f is not None:
        nan = float("nan")
        removed = Interval(value=f.removed / f.examples if f.examples else nan, n=f.examples,
                           ci_low=nan, ci_high=nan)  # fmt: skip
        f1 = Interval(value=f.f1, n=f.examples, ci_low=nan, ci_high=nan)
        rows += [
            _row("filter_precision", "defense", f.defense, f.precision),
            _row("filter_recall", "defense", f.defense, f.recall),
            _row("filter_f1", "defense", f.defense, f1),
            _row("filter_removed", "defense", f.defense, removed),
        ]
    return rows


def poisoning_result(
    cfg: PoisoningSpec, after: BackdoorEffect, poisons: int, kept: PoisonFilter | None
) -> PoisoningResult:
    """The poisoning block of metrics.json: the evaluated model's effect, the defense's."""
    return PoisoningResult(
        asr=after.asr.value, n=after.asr.n, ci_low=after.asr.ci_low, ci_high=after.asr.ci_high,
        target=int(cfg.target), trigger=cfg.trigger, fraction=float(cfg.fraction),
        scenario=cfg.scenario, defense=str(cfg.defense), poisons=poisons, after=after,
        before=kept.before if kept is not None else None,
        filter=kept.metrics if kept is not None else None,
    )  # fmt: skip
