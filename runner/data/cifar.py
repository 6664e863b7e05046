"""CIFAR-10 and CIFAR-100, in the python or the binary version, from ``root`` or the folder the
archive extracts to under it (``cifar-10-batches-py``, ``cifar-10-batches-bin``,
``cifar-100-python``, ``cifar-100-binary``).

Binary files are runs of fixed-size records: the label byte(s) (CIFAR-100: coarse then fine),
then 1024 red, 1024 green and 1024 blue bytes, each plane a 32x32 image in row-major order.
Python files are pickled dicts (``data``: a uint8 array (N, 3072) in that same order, plus
``labels`` or ``fine_labels``/``coarse_labels``), read with :mod:`runner.data.safe_pickle`,
which resolves nothing but NumPy's array reconstruction. Where both versions are present the
binary one is read (no unpickling at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.data import Dataset, DataSpecLike, make_dataset, uint8_to_float01
from runner.data.memory import reserve
from runner.data.safe_pickle import load_data_pickle
from runner.data.source import DataSource
from runner.errors import AdvrunError

if TYPE_CHECKING:
    import numpy as np

_PIXELS = 3 * 32 * 32
_CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_GET = {
    "cifar10": "download cifar-10-python.tar.gz (or cifar-10-binary.tar.gz) from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, extract it, and point data.root at the folder",
    "cifar100": "download cifar-100-python.tar.gz (or cifar-100-binary.tar.gz) from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, extract it, and point data.root at the folder",
}


@dataclass(frozen=True)
class _Layout:
    version: str  # "binary" or "python"
    subdir: str  # the folder the archive extracts to
    train: tuple[str, ...]
    test: tuple[str, ...]


_LAYOUTS = {
    "cifar10": (
        _Layout("binary", "cifar-10-batches-bin",
                tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",)),
        _Layout("python", "cifar-10-batches-py",
                tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",)),
    ),
    "cifar100": (
        _Layout("binary", "cifar-100-binary", ("train.bin",), ("test.bin",)),
        _Layout("python", "cifar-100-python", ("train",), ("test",)),
    ),
}  # fmt: skip
_CLASSES = {"cifar10": 10, "cifar100": 100}
_COARSE = 20


def load_cifar10(spec: DataSpecLike) -> Dataset:
    """CIFAR-10: 50k train (5 batches) + 10k official test, 3x32x32, 10 classes."""
    return _load("cifar10", spec, "labels")


def load_cifar100(spec: DataSpecLike) -> Dataset:
    """CIFAR-100: 50k train + 10k official test, 3x32x32; 100 fine or 20 coarse classes."""
    which = getattr(spec, "labels", None) or "fine"
    return _load("cifar100", spec, f"{which}_labels")


def _load(name: str, spec: DataSpecLike, label_key: str) -> Dataset:
    layout, folder = _locate(name, spec)
    paths = [folder / f for f in (*layout.train, *layout.test)]
    raw = sum(p.stat().st_size for p in paths)
    # python files are a little larger than their pixels (labels, names): an upper bound
    reserve(name, raw // _PIXELS, (3, 32, 32), f"from {folder}", extra_bytes=raw)
    read = _read_binary if layout.version == "binary" else _read_python
    x_train, y_train = read(name, [folder / f for f in layout.train], label_key)
    x_test, y_test = read(name, [folder / f for f in layout.test], label_key)
    classes = _COARSE if label_key == "coarse_labels" else _CLASSES[name]
    return make_dataset(
        name,
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=classes,
        class_names=_class_names(name, layout, folder, label_key, classes),
        where=str(folder),
    )


def _locate(name: str, spec: DataSpecLike) -> tuple[_Layout, Path]:
    get = _GET[name]
    if not getattr(spec, "root", None):
        raise AdvrunError(f"dataset '{name}' needs data.root; {get}")
    root = Path(str(spec.root)).expanduser()
    if not root.is_dir():
        raise AdvrunError(f"data.root {root} is not a directory; {get}")
    candidates = [(lay, f) for lay in _LAYOUTS[name] for f in (root, root / lay.subdir)]

    def present(lay: _Layout, folder: Path) -> list[str]:
        return [n for n in (*lay.train, *lay.test) if (folder / n).is_file()]

    for lay, folder in candidates:  # binary first: it needs no unpickling
        if len(present(lay, folder)) == len(lay.train) + len(lay.test):
            return lay, folder
    lay, folder = max(candidates, key=lambda c: len(present(*c)))
    if not present(lay, folder):
        wanted = "; ".join(
            f"{lay.version}: {', '.join((*lay.train, *lay.test))} in {root} or {root / lay.subdir}"
            for lay in _LAYOUTS[name]
        )
        other = "cifar100" if name == "cifar10" else "cifar10"
        hint = (
            f"; this looks like {other}: use dataset: {other}"
            if any(present(*c) for c in ((lay, f) for lay in _LAYOUTS[other]
                                         for f in (root, root / lay.subdir)))
            else ""
        )  # fmt: skip
        raise AdvrunError(f"expected {name} files ({wanted}), found none{hint}; {get}")
    missing = [n for n in (*lay.train, *lay.test) if not (folder / n).is_file()]
    raise AdvrunError(
        f"{name} ({lay.version} version) files missing in {folder}: {', '.join(missing)}; {get}"
    )


def _read_binary(name: str, paths: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    n_labels = 1 if name == "cifar10" else 2  # CIFAR-100 records: coarse, fine, pixels
    record = n_labels + _PIXELS
    label_at = 1 if label_key == "fine_labels" else 0
    classes = _COARSE if label_key == "coarse_labels" else _CLASSES[name]
    chunks = []
    for path in paths:
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise AdvrunError(f"cannot read {path} ({exc})") from None
        if raw.size == 0 or raw.size % record:
            raise AdvrunError(
                f"{path} has {raw.size} bytes, not a whole number of {record}-byte {name} "
                f"records; it is truncated or not the binary version; {_GET[name]}"
            )
        records = raw.reshape(-1, record)
        top = int(records[:, label_at].max())
        if top >= classes:
            also = " or is CIFAR-100 (use dataset: cifar100)" if name == "cifar10" else ""
            raise AdvrunError(
                f"{path} has label {top}, but {name} has {classes} "
                f"{label_key.replace('_labels', '')} classes; the file is corrupt{also}; "
                f"{_GET[name]}"
            )
        chunks.append(records)
    records = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    x = uint8_to_float01(records[:, n_labels:].reshape(-1, 3, 32, 32))
    return x, records[:, label_at].astype(np.int64)


def _read_python(name: str, paths: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    classes = _COARSE if label_key == "coarse_labels" else _CLASSES[name]
    xs, ys = [], []
    for path in paths:
        batch = _batch_dict(path, name)
        data = batch.get("data")
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or (data.shape[1] != _PIXELS)
        ):
            found = (
                f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__
            )  # fmt: skip
            raise AdvrunError(
                f"{path}: 'data' must be a uint8 array (N, {_PIXELS}) of 32x32 RGB images, "
                f"found {found}; the file is corrupt or not the {name} python version"
            )
        if label_key not in batch:
            keys = ", ".join(sorted(batch)) or "no keys"
            raise AdvrunError(
                f"{path} has no '{label_key}' (keys: {keys}); "
                + (
                    "this looks like CIFAR-100: use dataset: cifar100"
                    if name == "cifar10" and "fine_labels" in batch
                    else f"it is not the {name} python version"
                )
            )
        try:
            labels = np.asarray(batch[label_key], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            labels = np.empty(0, dtype=object)
        if labels.dtype != np.int64 or labels.shape != (len(data),):
            raise AdvrunError(
                f"{path}: '{label_key}' must be {len(data)} integer labels (one per image), "
                f"found {len(batch[label_key]) if hasattr(batch[label_key], '__len__') else '?'} "
                f"of type {type(batch[label_key]).__name__}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= classes):
            bad = int(labels.max() if labels.max() >= classes else labels.min())
            raise AdvrunError(
                f"{path} has label {bad} in '{label_key}', but {name} has {classes} classes "
                "there; the file is corrupt"
            )
        xs.append(data)
        ys.append(labels)
    data = np.concatenate(xs) if len(xs) > 1 else xs[0]
    x = uint8_to_float01(data.reshape(-1, 3, 32, 32))
    return x, np.concatenate(ys) if len(ys) > 1 else ys[0]


def _batch_dict(path: Path, name: str) -> dict[str, Any]:
    """The pickled dict of one python-version file, keys as str (they are bytes in the files)."""
    obj = load_data_pickle(path, f"a {name} python-version file")
    if not isinstance(obj, dict):
        raise AdvrunError(
            f"{path}: expected a pickled dict (data, labels, ...), found {type(obj).__name__}; "
            f"the file is not the {name} python version"
        )
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _class_names(
    name: str, layout: _Layout, folder: Path, label_key: str, classes: int
) -> tuple[str, ...] | None:
    """Names from the version's meta file when present and well-formed, else the standard
    CIFAR-10 names (None for CIFAR-100, whose meta file carries them)."""
    fallback = _CIFAR10_CLASSES if name == "cifar10" else None
    if layout.version == "binary":
        meta = "batches.meta.txt" if name == "cifar10" else f"{label_key[:-7]}_label_names.txt"
        try:
            text = (folder / meta).read_text()
        except (OSError, UnicodeDecodeError):
            return fallback
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    else:
        path = folder / ("batches.meta" if name == "cifar10" else "meta")
        if not path.is_file():
            return fallback
        key = "label_names" if name == "cifar10" else label_key.replace("labels", "label_names")
        raw = _batch_dict(path, name).get(key)
        names = tuple(
            (n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)) for n in raw or ()
        )
    return names if len(names) == classes else fallback


class CIFAR10(DataSource):
    """CIFAR-10, python or binary version under root."""

    needs = "root"
    shape = (3, 32, 32)
    load = staticmethod(load_cifar10)


class CIFAR100(DataSource):
    """CIFAR-100, python or binary version under root; fine or coarse labels."""

    needs = "root"
    shape = (3, 32, 32)
    options = ("labels",)
    load = staticmethod(load_cifar100)
