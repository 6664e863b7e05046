"""In-memory data sets and their deterministic train/val/test split.

Loaders (``runner.data.<module>``) are named in ``runner.catalog.DATASETS`` and take any object
with attributes ``dataset``, ``path`` and ``root`` (the validated data spec), so they stay free
of pydantic. They return a :class:`Dataset`; :func:`split` turns it into :class:`Splits`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from runner.errors import AdvrunError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DataSpecLike",
    "Dataset",
    "Splits",
    "make_dataset",
    "conform_classes",
    "check_split_classes",
    "split",
    "content_sha256",
    "uint8_to_float01",
]


class DataSpecLike(Protocol):
    """What a loader reads from the data spec."""

    dataset: str
    path: str | None
    root: str | None


@dataclass(frozen=True, eq=False)  # arrays have no single truth value for ==
class Dataset:
    """Arrays of one data source: x is float32 (N, C, H, W) in [0, 1], y is int64 class indices.

    ``x_test``/``y_test`` are None when the source has no official test split.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int
    name: str
    sha256: str  # content hash of the arrays (see content_sha256), recorded with each run
    class_names: tuple[str, ...] | None = None
    inferred_classes: bool = False  # num_classes was max(label) + 1, not given by the source
    where: str = ""  # the file or folder it came from, for error messages

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one example."""
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))


@dataclass(frozen=True, eq=False)  # arrays have no single truth value for ==
class Splits:
    """The train/val/test arrays a run uses (val may be empty, with shape (0, C, H, W))."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def content_sha256(*arrays: np.ndarray | None) -> str:
    """Hex SHA-256 over dtype, shape and bytes of each array (None hashes as a marker).

    Dtype and shape are hashed too, so a reshaped or re-typed copy of the same bytes differs.
    """
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def uint8_to_float01(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (one float32 copy, divided in place)."""
    import numpy as np

    out = x.astype(np.float32)
    out /= 255.0
    return out


def make_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    num_classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
    where: str = "",
) -> Dataset:
    """Check the loader's arrays against the Dataset contract, then hash them.

    ``num_classes`` defaults to max(label) + 1; ``where`` (a path) goes into error messages.
    """
    at = f" in {where}" if where else ""
    if (x_test is None) != (y_test is None):
        raise AdvrunError(f"{name}: test images and test labels must come together{at}")
    pairs = [("train", x_train, y_train)]
    if x_test is not None:
        pairs.append(("test", x_test, y_test))
    for part, x, y in pairs:
        _check_split(name, part, x, y, at)
    if x_test is not None and x_test.shape[1:] != x_train.shape[1:]:
        raise AdvrunError(
            f"{name}: test images are {x_test.shape[1:]} but train images are "
            f"{x_train.shape[1:]}{at}; both must have the same (C, H, W)"
        )
    top = max(int(y.max()) for _, _, y in pairs)
    inferred = num_classes is None
    if num_classes is None:
        num_classes = top + 1
    elif top >= num_classes:
        raise AdvrunError(
            f"{name}: label {top} is out of range for {num_classes} classes{at}; "
            "the file is corrupt or not this data set"
        )
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=int(num_classes),
        name=name,
        sha256=content_sha256(x_train, y_train, x_test, y_test),
        class_names=_check_class_names(name, class_names, int(num_classes), at),
        inferred_classes=inferred,
        where=where,
    )


def _check_split(name: str, part: str, x: np.ndarray, y: np.ndarray, at: str) -> None:
    """One split's images and labels: dtypes and shapes, one label per image, not empty,
    class indices, finite pixels in [0, 1]."""
    import numpy as np

    if x.ndim != 4 or x.dtype != np.float32:
        raise AdvrunError(
            f"{name}: {part} images must be float32 (N, C, H, W), got {x.dtype} {x.shape}{at}"
        )
    if y.ndim != 1 or y.dtype != np.int64:
        raise AdvrunError(f"{name}: {part} labels must be int64 (N,), got {y.dtype} {y.shape}{at}")
    if len(x) != len(y):
        raise AdvrunError(
            f"{name}: {len(x)} {part} images but {len(y)} {part} labels{at}; "
            "every image needs exactly one label"
        )
    if len(x) == 0:
        raise AdvrunError(f"{name}: the {part} split is empty{at}")
    if y.min() < 0:
        raise AdvrunError(
            f"{name}: negative {part} label {int(y.min())}{at}; labels are class indices 0..K-1"
        )
    # min/max propagate NaN and reach +-inf, so two reductions check finiteness too
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise AdvrunError(
            f"{name}: {bad} {part} image(s) hold NaN or infinite pixels{at}; fix or drop them"
        )
    if lo < 0.0 or hi > 1.0:
        raise AdvrunError(
            f"{name}: {part} pixels span [{lo:g}, {hi:g}], outside [0, 1]{at}; loaders deliver "
            "[0, 1] images, which advrun maps onto threat.pixel_range: scale the data to "
            "[0, 1] (or save uint8 0..255)"
        )


def _check_class_names(
    name: str, names: tuple[str, ...] | None, num_classes: int, at: str
) -> tuple[str, ...] | None:
    """Class names come from data files: one line of printable text each, one per class."""
    if names is None:
        return None
    names = tuple(names)
    if len(names) != num_classes:
        raise AdvrunError(
            f"{name}: {len(names)} class names for {num_classes} classes{at}; the names file "
            "must list one name per class"
        )
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n or len(n) > 200:
            raise AdvrunError(
                f"{name}: class name {i} is not a non-empty text of at most 200 characters{at}"
            )
        if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in n):
            raise AdvrunError(
                f"{name}: class name {i} ({n!r}) holds control characters{at}; names are one "
                "line of printable text"
            )
    return names


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8' (at most 8 groups)."""
    groups: list[list[int]] = []
    for v in values:
        if groups and v == groups[-1][1] + 1:
            groups[-1][1] = v
        else:
            groups.append([v, v])
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in groups]
    return ", ".join(parts[:8]) + (f", ... ({len(parts) - 8} more)" if len(parts) > 8 else "")


def _labels_of(ds: Dataset) -> np.ndarray:
    import numpy as np

    return ds.y_train if ds.y_test is None else np.concatenate([ds.y_train, ds.y_test])


def conform_classes(ds: Dataset, declared: int | None) -> Dataset:
    """Apply the spec's ``data.num_classes`` and refuse labels that skip classes.

    With a class count inferred as max(label) + 1 (npz files), labels 0-9 plus a few 42s would
    silently train a 43-class model; that is refused, naming the labels, unless the spec
    declares ``data.num_classes``.
    """
    import numpy as np

    at = f" in {ds.where}" if ds.where else ""
    labels = _labels_of(ds)
    counts = np.bincount(labels, minlength=ds.num_classes)
    present = [int(c) for c in np.flatnonzero(counts)]
    if declared is not None:
        if not ds.inferred_classes and declared != ds.num_classes:
            raise AdvrunError(
                f"data set '{ds.name}' has {ds.num_classes} classes{at}, but data.num_classes is "
                f"{declared}; remove data.num_classes or set it to {ds.num_classes}"
            )
        if present[-1] >= declared:
            over = [c for c in present if c >= declared]
            raise AdvrunError(
                f"{ds.name}: labels {_ranges(over)}{at} are out of range for data.num_classes "
                f"{declared} (labels 0..{declared - 1}); fix the labels or raise data.num_classes"
            )
        return dataclasses.replace(ds, num_classes=int(declared))
    if not ds.inferred_classes:
        return ds
    missing = [c for c in range(ds.num_classes) if counts[c] == 0]
    if missing:
        first_gap = missing[0]
        beyond = [c for c in present if c > first_gap]
        n_beyond = int(sum(counts[c] for c in beyond))
        raise AdvrunError(
            f"{ds.name}: labels skip classes{at}: label(s) {_ranges(beyond)} ({n_beyond} "
            f"example(s)) lie beyond class(es) {_ranges(missing)}, which have no examples, so the "
            f"class count would be {ds.num_classes}; fix the labels, or declare "
            f"data.num_classes: {ds.num_classes} if the data set really has that many classes"
        )
    return ds


def check_split_classes(ds: Dataset, sp: Splits, limit: int | None = None) -> None:
    """Every class of the data set has examples in train and test (and in val, when it is used)."""
    import numpy as np

    classes = set(int(c) for c in np.unique(_labels_of(ds)))
    for part, y, fix in (
        ("training", sp.y_train, "raise data.limit" if limit else "use more data"),
        ("test", sp.y_test, "raise data.test_fraction or use more data"),
        ("validation", sp.y_val, "raise data.val_fraction (or set it to 0)"),
    ):
        if part == "validation" and len(y) == 0:
            continue
        missing = sorted(classes - set(int(c) for c in np.unique(y)))
        if missing:
            raise AdvrunError(
                f"{ds.name}: the {part} split ({len(y)} examples) has no examples of class(es) "
                f"{_ranges(missing)}; {fix}"
            )


def _carve(
    idx: np.ndarray, y: np.ndarray, n_out: int, seed: int, what: str, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split index array ``idx`` into (rest, out) with ``n_out`` items out, stratified by y."""
    import numpy as np

    if n_out == 0:
        return idx, idx[:0]
    from sklearn.model_selection import train_test_split  # heavy import, only when splitting

    try:
        rest, out = train_test_split(idx, test_size=n_out, random_state=seed, stratify=y[idx])
    except ValueError as exc:
        # sklearn refuses when a class has < 2 members or n_out < number of classes
        raise AdvrunError(
            f"cannot carve a stratified {what} split of {n_out} examples from {len(idx)} "
            f"examples of data set '{name}': {exc}; change data.{what}_fraction or use more data"
        ) from None
    return np.asarray(rest), np.asarray(out)


def split(ds: Dataset, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Stratified, seeded train/val/test split.

    With an official test split, that is the test set (``test_fraction`` is ignored) and val is
    ``val_fraction`` of train. Otherwise test and then val are carved from the single pool; both
    fractions are of the whole pool. Sizes are rounded to whole examples. The result depends only
    on the arrays and the seed (sklearn's seeded RandomState), so it is the same on every machine.
    """
    import numpy as np

    for label, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise AdvrunError(f"{label} must be in [0, 1), got {f}")
    n = len(ds.y_train)
    if ds.x_test is not None and ds.y_test is not None:
        n_test, x_test, y_test = 0, ds.x_test, ds.y_test
    else:
        if val_fraction + test_fraction >= 1.0:
            raise AdvrunError(
                f"val_fraction + test_fraction must be < 1 (got {val_fraction} + "
                f"{test_fraction}) so that some data is left to train on"
            )
        n_test = int(round(test_fraction * n))
        x_test = y_test = None
    n_val = int(round(val_fraction * n))

    idx = np.arange(n)
    idx, test_idx = _carve(idx, ds.y_train, n_test, seed, "test", ds.name)
    idx, val_idx = _carve(idx, ds.y_train, n_val, seed, "val", ds.name)
    if len(idx) == 0:
        raise AdvrunError(f"no training examples left in '{ds.name}' after the val/test split")
    if x_test is None:
        x_test, y_test = ds.x_train[test_idx], ds.y_train[test_idx]
    return Splits(
        x_train=ds.x_train[idx],
        y_train=ds.y_train[idx],
        x_val=ds.x_train[val_idx],
        y_val=ds.y_train[val_idx],
        x_test=x_test,
        y_test=y_test,
    )
