"""Load a data set once per process, split it, scale it to the pixel range, move it to the device."""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from runner.catalog import DATASETS


@dataclass(frozen=True)
class Prepared:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    sha256: str


@functools.lru_cache(maxsize=4)
def load_split(data_json: str):
    """The data set and its split, loaded once per process (keyed by the canonical data JSON)."""
    from runner.data import check_split_classes, conform_classes, split

    cfg = json.loads(data_json)
    ds = DATASETS.load(cfg["dataset"])(SimpleNamespace(**cfg))
    ds = conform_classes(ds, cfg.get("num_classes"))  # labels that skip classes are refused
    sp = split(ds, cfg["val_fraction"], cfg["test_fraction"], cfg["split_seed"])
    if cfg.get("limit"):
        n = cfg["limit"]  # Splits is frozen: build a trimmed copy
        sp = dataclasses.replace(sp, x_train=sp.x_train[:n], y_train=sp.y_train[:n])
    check_split_classes(ds, sp, cfg.get("limit"))
    return ds, sp


def prepare(
    data: dict[str, Any], pixel_range: tuple[float, float], device: torch.device
) -> Prepared:
    ds, sp = load_split(json.dumps(data, sort_keys=True))
    lo, hi = pixel_range

    def tx(a: np.ndarray) -> torch.Tensor:  # loaders give [0, 1]; the threat model's range rules
        return torch.as_tensor(np.asarray(a, dtype=np.float32) * (hi - lo) + lo, device=device)

    def ty(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)

    return Prepared(
        tx(sp.x_train),
        ty(sp.y_train),
        tx(sp.x_val),
        ty(sp.y_val),
        tx(sp.x_test),
        ty(sp.y_test),
        ds.num_classes,
        tuple(sp.x_train.shape[1:]),
        ds.sha256,
    )
