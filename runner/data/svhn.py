"""SVHN, cropped digits (format 2): ``train_32x32.mat`` and ``test_32x32.mat`` under ``root``.

Each file is a MATLAB v5 file (read with :func:`scipy.io.loadmat`, which builds arrays, never
objects) holding ``X``, uint8 (32, 32, 3, N), and ``y``, (N, 1) labels 1..10 where 10 stands for
the digit 0; advrun maps 10 to 0 so that label k is digit k, as torchvision does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runner.data import Dataset, DataSpecLike, make_dataset, uint8_to_float01
from runner.data.memory import reserve
from runner.data.source import DataSource
from runner.errors import AdvrunError

if TYPE_CHECKING:
    import numpy as np

_FILES = ("train_32x32.mat", "test_32x32.mat")
_GET = (
    "download train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ "
    "and point data.root at their folder"
)


def load(spec: DataSpecLike) -> Dataset:
    """SVHN: 73,257 train + 26,032 official test digits, 3x32x32, 10 classes."""
    folder = _locate(spec)
    paths = [folder / f for f in _FILES]
    raw = sum(p.stat().st_size for p in paths)
    reserve("svhn", raw // (3 * 32 * 32), (3, 32, 32), f"from {folder}", extra_bytes=raw)
    (x_train, y_train), (x_test, y_test) = (_read(p) for p in paths)
    return make_dataset(
        "svhn",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        where=str(folder),
    )


def _locate(spec: DataSpecLike) -> Path:
    if not getattr(spec, "root", None):
        raise AdvrunError(f"dataset 'svhn' needs data.root; {_GET}")
    root = Path(str(spec.root)).expanduser()
    if not root.is_dir():
        raise AdvrunError(f"data.root {root} is not a directory; {_GET}")
    for folder in (root, root / "svhn", root / "SVHN"):
        if all((folder / f).is_file() for f in _FILES):
            return folder
    missing = [f for f in _FILES if not (root / f).is_file()]
    raise AdvrunError(f"SVHN files missing in {root}: {', '.join(missing)}; {_GET}")


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    from scipy.io import loadmat, whosmat  # imported only for SVHN

    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # scipy raises ValueError/TypeError/MatReadError/NotImplementedError
        raise AdvrunError(
            f"{path} is not a readable MATLAB v5 file ({type(e).__name__}: {str(e)[:120]}); "
            f"expected SVHN's cropped-digits format (X, y); {_GET}"
        ) from None
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None:
        found = ", ".join(sorted(name for name, _, _ in whosmat(path))) or "no variables"
        raise AdvrunError(f"{path}: expected variables X and y, found {found}; {_GET}")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise AdvrunError(
            f"{path}: X must be uint8 (32, 32, 3, N), found {x.dtype} {x.shape}; this is not "
            "the cropped-digits (format 2) file"
        )
    y = np.asarray(y).reshape(-1)
    if len(y) != x.shape[3]:
        raise AdvrunError(f"{path}: {x.shape[3]} images in X but {len(y)} labels in y")
    if not np.issubdtype(y.dtype, np.number) or len(y) and (y.min() < 1 or y.max() > 10):
        lo, hi = (y.min(), y.max()) if len(y) else ("-", "-")
        raise AdvrunError(
            f"{path}: SVHN labels are 1..10 (10 is the digit 0), found {y.dtype} in [{lo}, {hi}]"
        )
    labels = y.astype(np.int64) % 10  # 10 -> 0
    return uint8_to_float01(x.transpose(3, 2, 0, 1)), labels


class SVHN(DataSource):
    """SVHN cropped digits (train_32x32.mat, test_32x32.mat)."""

    needs = "root"
    shape = (3, 32, 32)
    flip = False
    load = staticmethod(load)
