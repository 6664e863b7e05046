"""Certify a model at every noise level of the ``certify`` block, resumably.

The certified examples (every ``skip``-th test example, ``n_examples`` of them) are processed in
chunks; each finished chunk is kept in the evaluation checkpoint (``RUN/eval/``), so a run killed
during certification loses at most the chunk in progress, and since every example draws from its
own noise streams, the resumed numbers equal an uninterrupted run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from torch import Tensor, nn

from runner import faults
from runner.certify import bounds
from runner.certify.results import per_sigma_results
from runner.certify.smoothing import Outcome, Settings, as_settings, smooth
from runner.spec.certify import TRAIN, CertifySpec

CHUNK_PASSES = 64  # forward passes of work between two saves of the finished examples


class Keeper(Protocol):
    """Where finished chunks are kept (the evaluation checkpoint): JSON values by name."""

    def load(self, name: str) -> Any: ...

    def save(self, name: str, value: Any) -> None: ...


@dataclass(frozen=True)
class CertifyContext:
    """One model's certification: ``x``/``y`` the whole test split (on the model's device);
    ``train_sigma`` the run's training noise (what ``sigma: train`` means; None for a recipe
    without noise or an audit)."""

    model: nn.Module
    x: Tensor
    y: Tensor
    num_classes: int
    pixel_range: tuple[float, float]
    settings: CertifySpec
    train_sigma: float | None = None
    log: Callable[[str], None] = print
    checkpoint: Keeper | None = None


@dataclass
class Certification:
    """Per-example rows (for examples.parquet), result rows (scope ``certified`` and
    ``smoothed``) and one summary per noise level (for metrics.json)."""

    examples: pd.DataFrame
    results: list[dict[str, Any]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)

    def joined(
        self, examples: pd.DataFrame, results: list[dict[str, Any]]
    ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        """The evaluation's examples and results rows with these after them."""
        if self.examples.empty and not self.results:
            return examples, results
        return pd.concat([examples, self.examples], ignore_index=True), [*results, *self.results]


def certify_phase(
    cfg: CertifySpec | None,
    model: nn.Module,
    data: Any,
    threat: Any,
    train_sigma: float | None,
    log: Callable[[str], None],
    checkpoint: Keeper | None,
) -> Certification:
    """The certification of a run or audit after its attack suite (nothing without ``cfg``):
    ``data`` the prepared split (its whole test split, on the model's device), ``threat`` the
    resolved threat model (its pixel range)."""
    if cfg is None:
        return Certification(pd.DataFrame())
    ctx = CertifyContext(
        model, data.x_test, data.y_test, data.num_classes, tuple(threat.pixel_range), cfg,
        train_sigma, log, checkpoint,
    )  # fmt: skip
    return certify_model(ctx)


def sigmas(cfg: CertifySpec, train_sigma: float | None) -> list[float]:
    """The noise levels to certify at, ``train`` resolved (dropped when the run has none)."""
    out: list[float] = []
    for s in cfg.sigma:
        value = train_sigma if s == TRAIN else s
        if value is not None and float(value) not in out:
            out.append(float(value))
    return out


def certify_model(ctx: CertifyContext) -> Certification:
    """CERTIFY and PREDICT at every noise level, with the certified-accuracy curve."""
    cfg = ctx.settings
    idx = list(range(0, len(ctx.x), cfg.skip))[: cfg.n_examples]
    dim = int(ctx.x[0].numel())
    levels = sigmas(cfg, ctx.train_sigma)
    if TRAIN in cfg.sigma and ctx.train_sigma is None:
        ctx.log("certify: sigma 'train' skipped: this model was not trained with noise")
    frames, results, summaries = [], [], []
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        y = ctx.y[idx].cpu().numpy()
        for sigma in levels:
            outcome, seconds = _certify_sigma(ctx, as_settings(sigma, cfg), idx)
            frame, rows, summary = per_sigma_results(
                outcome, y, idx, sigma, cfg, ctx.pixel_range, dim
            )
            summary["seconds"] = seconds
            summaries.append(summary)
            frames.append(frame)
            results += rows
            ctx.log(_line(summary))
    finally:
        ctx.model.train(was_training)
    examples = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Certification(examples, results, summaries)


def _line(s: dict[str, Any]) -> str:
    at = ", ".join(f"r={p['radius']:g}: {p['accuracy']:.3f}" for p in s["curve"])
    return (
        f"certified sigma={s['sigma']:g} ({s['n_examples']} examples, n={s['n']}): {at}; "
        f"abstained {s['abstained']}, ACR {s['acr']:.3f}"
    )


def _certify_sigma(ctx: CertifyContext, s: Settings, idx: list[int]) -> tuple[Outcome, float]:
    """Every example's outcome at one noise level, chunk by chunk (finished chunks kept), and
    the seconds the chunks took (those kept from before a resume included)."""
    per_example = s.n0 + s.n + s.predict_n
    chunk = max(1, CHUNK_PASSES * s.batch_size // per_example)
    parts: list[dict[str, list]] = []
    for c, start in enumerate(range(0, len(idx), chunk)):
        name = f"certify_sigma={s.sigma:g}_chunk={c}"
        kept = ctx.checkpoint.load(name) if ctx.checkpoint is not None else None
        if kept is None:
            part = idx[start : start + chunk]
            t0 = time.perf_counter()
            out = smooth(ctx.model, ctx.x[part], part, ctx.num_classes, s)
            kept = _as_json(out, time.perf_counter() - t0)
            if ctx.checkpoint is not None:
                ctx.checkpoint.save(name, kept)
            faults.reached("certify")
        parts.append(kept)
    return _from_json(parts, s), float(sum(p["seconds"] for p in parts))


_KEYS = ("certified", "count", "p_lower", "predicted", "p_value")


def _as_json(o: Outcome, seconds: float) -> dict[str, Any]:
    """A chunk's outcome as plain lists (floats exactly as computed; the radius is recomputed
    from p_lower)."""
    return {
        **{k: [v.item() for v in getattr(o, k)] for k in _KEYS},
        "seconds": seconds,
    }


def _from_json(parts: list[dict[str, Any]], s: Settings) -> Outcome:
    cat = {k: np.concatenate([np.asarray(p[k]) for p in parts]) if parts else np.array([])
           for k in _KEYS}  # fmt: skip
    p_lower = cat["p_lower"].astype(np.float64)
    return Outcome(
        certified=cat["certified"].astype(np.int64),
        count=cat["count"].astype(np.int64),
        p_lower=p_lower,
        radius=bounds.radius(p_lower, s.sigma),
        predicted=cat["predicted"].astype(np.int64),
        p_value=cat["p_value"].astype(np.float64),
    )
