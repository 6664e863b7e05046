"""scikit-learn's bundled 8x8 handwritten digits: no download, so the default for smoke runs."""

from __future__ import annotations

from runner.data import Dataset, DataSpecLike, make_dataset
from runner.data.source import DataSource


def load(spec: DataSpecLike) -> Dataset:
    """All 1797 digits as one pool (there is no official test split); path/root are unused."""
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16 (counts of set bits in 4x4 blocks of the original 32x32 bitmaps)
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    names = tuple(str(t) for t in bunch.target_names)
    return make_dataset("digits", x, y, num_classes=10, class_names=names)


class Digits(DataSource):
    """scikit-learn's bundled 8x8 digits (embedded)."""

    shape = (1, 8, 8)
    flip = False
    load = staticmethod(load)
