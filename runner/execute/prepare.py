"""Load a data set once per process, split it, scale it to the pixel range, move it to the device."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch

from runner.catalog import DATASETS
from runner.spec.core import DataSpec


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
    class_names: list[str] | None = None  # from the data set (image_folder: folder names)

    @property
    def memory(self) -> str:
        """What the tensors take, for the run log: '50,000 train + ... images: 703.1 MiB'."""
        from runner.data.memory import human

        parts = (self.x_train, self.x_val, self.x_test)
        total = sum(t.element_size() * t.nelement() for t in parts)
        where = (
            "" if self.x_train.device == self.x_test.device else ", training set pinned on the host"
        )
        return (
            f"{' + '.join(f'{len(t):,}' for t in parts)} train/val/test images of "
            f"{'x'.join(map(str, self.input_shape))}: {human(total)} as float32{where}"
        )


def load_split(data: DataSpec):
    """The data set and its split, loaded once per process."""
    return _load_split(data.model_dump_json())


@functools.lru_cache(maxsize=4)
def _load_split(data_json: str):  # keyed by the canonical JSON: spec lists are not hashable
    from runner.data import check_split_classes, conform_classes, split

    cfg = DataSpec.model_validate_json(data_json)
    ds = DATASETS.load(cfg.dataset).load(cfg)
    ds = conform_classes(ds, cfg.num_classes)  # labels that skip classes are refused
    sp = split(ds, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    if cfg.limit:
        n = cfg.limit  # Splits is frozen: build a trimmed copy
        sp = dataclasses.replace(sp, x_train=sp.x_train[:n], y_train=sp.y_train[:n])
    check_split_classes(ds, sp, cfg.limit)
    return ds, sp


DEVICE_SHARE = (
    0.5  # the training set stays on the GPU when it takes at most this share of free memory
)


def training_set_device(nbytes: int, device: torch.device) -> torch.device:
    """Where the training images live: on the GPU when they fit comfortably (no copy per batch),
    else in pinned host memory, copied batch by batch without blocking (see the training loop)."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes <= DEVICE_SHARE * free else torch.device("cpu")


def prepare(data: DataSpec, pixel_range: tuple[float, float], device: torch.device) -> Prepared:
    ds, sp = load_split(data)
    lo, hi = pixel_range

    def tx(a: np.ndarray, where: torch.device = device) -> torch.Tensor:
        # loaders give [0, 1]; the threat model's range rules
        t = torch.as_tensor(np.asarray(a, dtype=np.float32) * (hi - lo) + lo, device=where)
        return t.pin_memory() if where.type == "cpu" and device.type == "cuda" else t

    def ty(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)

    train_at = training_set_device(int(sp.x_train.size) * 4, device)
    return Prepared(
        tx(sp.x_train, train_at),
        ty(sp.y_train),
        tx(sp.x_val),
        ty(sp.y_val),
        tx(sp.x_test),
        ty(sp.y_test),
        ds.num_classes,
        tuple(sp.x_train.shape[1:]),
        ds.sha256,
        list(ds.class_names) if ds.class_names else None,
    )
