"""A user's own data as a NumPy ``.npz`` file.

Accepted keys: ``x`` and ``y`` (one pool), or ``x_train``/``y_train`` with optional
``x_test``/``y_test`` (an official test split). Images may be (N, H, W), (N, H, W, C) with C in
1/3/4, or (N, C, H, W); uint8 pixels are scaled by 1/255, floats must already be in [0, 1].
Labels may be class indices or one-hot rows.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from runner.data import Dataset, DataSpecLike, make_dataset, uint8_to_float01
from runner.data.source import DataSource
from runner.errors import AdvrunError

if TYPE_CHECKING:
    import numpy as np

_CHANNELS = (1, 3, 4)


def load(spec: DataSpecLike) -> Dataset:
    """Load ``spec.path``; never unpickles (``allow_pickle=False``)."""

    if not getattr(spec, "path", None):
        raise AdvrunError(
            "dataset 'npz' needs data.path: set it to a .npz file with arrays x and y"
        )
    path = Path(str(spec.path)).expanduser()
    if not path.is_file():
        raise AdvrunError(
            f"npz file not found: {path}; check data.path (relative paths are taken from the "
            "directory advrun runs in)"
        )
    arrays = _arrays(path)
    parts = _layout(set(arrays), path)
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    one_hot_width: int | None = None
    for part, kx, ky in parts:
        xs[part] = _images(arrays[kx], kx, path)
        ys[part], width = _labels(arrays[ky], ky, path)
        if width is not None and one_hot_width not in (None, width):
            raise AdvrunError(
                f"one-hot labels in {path} have {one_hot_width} columns for train but {width} "
                "for test; both must have one column per class"
            )
        one_hot_width = width if width is not None else one_hot_width
    return make_dataset(
        "npz",
        xs["train"],
        ys["train"],
        xs.get("test"),
        ys.get("test"),
        num_classes=one_hot_width,  # None: max label + 1
        where=str(path),
    )


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, by key."""
    import numpy as np

    hint = "write it with numpy.savez(path, x=..., y=...)"
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
            raise AdvrunError(f"{path} holds a single array, not a .npz archive; {hint}")
        with loaded as npz:
            return {k: _read(npz, k, path) for k in npz.files}
    except AdvrunError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        # numpy reports a non-archive file as "pickled data" because it tries that format last
        raise AdvrunError(f"cannot read {path} as a .npz archive ({exc}); {hint}") from None


def _layout(keys: set[str], path: Path) -> list[tuple[str, str, str]]:
    """(split, image key, label key) of each split: x and y, or x_train and y_train (with
    x_test and y_test if both are there)."""
    if {"x", "y"} <= keys and "x_train" not in keys:
        return [("train", "x", "y")]
    if {"x_train", "y_train"} <= keys and "x" not in keys:
        parts = [("train", "x_train", "y_train")]
        if {"x_test", "y_test"} <= keys:
            parts.append(("test", "x_test", "y_test"))
        elif keys & {"x_test", "y_test"}:
            raise AdvrunError(f"{path} has only one of x_test/y_test; save both or neither")
        return parts
    raise AdvrunError(
        f"{path} has arrays {sorted(keys)}; expected either x and y, or x_train and y_train "
        "(optionally with x_test and y_test), not both layouts"
    )


def _read(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise AdvrunError(
                f"array '{key}' in {path} is an object (pickled) array, which advrun refuses to "
                "load for safety; save plain numeric arrays, e.g. np.asarray(x, dtype=np.uint8)"
            ) from None
        raise


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Any accepted image layout and dtype -> float32 (N, C, H, W) in [0, 1]."""
    import numpy as np

    if x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim == 4:
        last, first = x.shape[3] in _CHANNELS, x.shape[1] in _CHANNELS
        if last and first:
            # only tiny images are ambiguous, e.g. (N, 3, 4, 4) vs (N, 4, 4, 3): trust square H, W
            if x.shape[2] == x.shape[3] != x.shape[1]:
                last = False
            elif x.shape[1] == x.shape[2] != x.shape[3]:
                first = False
        if last and not first:
            x = np.transpose(x, (0, 3, 1, 2))
        elif not (first and not last):  # neither axis, or both, can be the channels
            raise AdvrunError(
                f"cannot tell the channel axis of '{key}' with shape {x.shape} in {path}; save it "
                "as (N, C, H, W) or (N, H, W, C) with C in 1, 3 or 4"
            )
    else:
        raise AdvrunError(
            f"'{key}' in {path} has shape {x.shape}; expected images (N, H, W), (N, H, W, C) or "
            "(N, C, H, W)"
        )

    if x.dtype == np.uint8:
        return uint8_to_float01(np.ascontiguousarray(x))
    if np.issubdtype(x.dtype, np.floating):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size and not np.isfinite(x).all():
            raise AdvrunError(f"'{key}' in {path} contains NaN or infinite pixel values")
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise AdvrunError(
                f"float pixels of '{key}' in {path} span [{lo:g}, {hi:g}], outside [0, 1]; "
                "scale them to [0, 1] (e.g. divide 0..255 values by 255) or save them as uint8"
            )
        return x
    # other integer types are refused rather than guessed: 0/1 masks and 0..255 images both occur
    raise AdvrunError(
        f"'{key}' in {path} has dtype {x.dtype}; save pixels as uint8 (0..255) or float in [0, 1]"
    )


def _labels(y: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, int | None]:
    """Class indices or one-hot rows -> int64 (N,); also the one-hot width, if any."""
    import numpy as np

    width = None
    if y.ndim == 2 and y.shape[1] > 1:
        width = int(y.shape[1])
        y = np.argmax(y, axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a column vector of indices
    elif y.ndim != 1:
        raise AdvrunError(
            f"'{key}' in {path} has shape {y.shape}; expected class indices (N,) or one-hot (N, K)"
        )
    if np.issubdtype(y.dtype, np.floating):
        if y.size and not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise AdvrunError(f"'{key}' in {path} holds non-integer labels; save class indices")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise AdvrunError(f"'{key}' in {path} has dtype {y.dtype}; save integer class indices")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise AdvrunError(f"'{key}' in {path} has negative label {int(y.min())}; labels are 0..K-1")
    return y, width


class Npz(DataSource):
    """A user .npz file with arrays x and y."""

    needs = "path"
    load = staticmethod(load)
