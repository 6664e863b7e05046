"""CIFAR-10, binary version (``cifar-10-binary.tar.gz``), from ``root`` or
``root/cifar-10-batches-bin``.

Each ``.bin`` file is a run of 3073-byte records: one label byte, then 1024 red, 1024 green and
1024 blue bytes, each plane a 32x32 image in row-major order. The binary version is read rather
than the Python one because that one is pickled, and advrun never unpickles data files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runner.data import Dataset, DataSpecLike, make_dataset, uint8_to_float01
from runner.errors import AdvrunError

_RECORD = 1 + 3 * 32 * 32
_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST = "test_batch.bin"
_CLASSES = (
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
_GET = (
    "download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "extract it, and point data.root at the extracted folder"
)


def load_cifar10(spec: DataSpecLike) -> Dataset:
    """CIFAR-10: 50k train (5 batches) + 10k official test, 3x32x32."""
    folder = _locate(spec)
    x_train, y_train = _read_batches([folder / name for name in _TRAIN])
    x_test, y_test = _read_batches([folder / _TEST])
    return make_dataset(
        "cifar10",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=len(_CLASSES),
        class_names=_class_names(folder),
        where=str(folder),
    )


def _locate(spec: DataSpecLike) -> Path:
    if not getattr(spec, "root", None):
        raise AdvrunError(f"dataset 'cifar10' needs data.root; {_GET}")
    root = Path(str(spec.root)).expanduser()
    if not root.is_dir():
        raise AdvrunError(f"data.root {root} is not a directory; {_GET}")
    needed = (*_TRAIN, _TEST)
    folders = [root, root / "cifar-10-batches-bin"]
    for folder in folders:
        if all((folder / name).is_file() for name in needed):
            return folder
    # report against the folder that has the most of the files
    folder = max(folders, key=lambda f: sum((f / n).is_file() for n in needed))
    missing = [n for n in needed if not (folder / n).is_file()]
    if len(missing) == len(needed):
        pickled = [root / "data_batch_1", root / "cifar-10-batches-py" / "data_batch_1"]
        if any(p.is_file() for p in pickled):
            raise AdvrunError(
                f"found the Python (pickled) version of CIFAR-10 under {root}; advrun reads "
                f"only the binary version; {_GET}"
            )
        raise AdvrunError(
            f"expected CIFAR-10 binary files ({', '.join(needed)}) under {root} or "
            f"{root / 'cifar-10-batches-bin'}, found none; {_GET}"
        )
    raise AdvrunError(f"CIFAR-10 files missing in {folder}: {', '.join(missing)}; {_GET}")


def _read_batches(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    chunks = []
    for path in paths:
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise AdvrunError(f"cannot read {path} ({exc})") from None
        if raw.size == 0 or raw.size % _RECORD:
            raise AdvrunError(
                f"{path} has {raw.size} bytes, not a whole number of {_RECORD}-byte CIFAR-10 "
                f"records; it is truncated or not the binary version; {_GET}"
            )
        records = raw.reshape(-1, _RECORD)
        if records[:, 0].max() >= len(_CLASSES):
            raise AdvrunError(
                f"{path} has label {int(records[:, 0].max())}, but CIFAR-10 has 10 classes; "
                f"the file is corrupt or is CIFAR-100 (not supported); {_GET}"
            )
        chunks.append(records)
    records = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    x = uint8_to_float01(records[:, 1:].reshape(-1, 3, 32, 32))
    y = records[:, 0].astype(np.int64)
    return x, y


def _class_names(folder: Path) -> tuple[str, ...]:
    """Names from the optional batches.meta.txt (one per line), else the standard ones."""
    meta = folder / "batches.meta.txt"
    try:
        names = tuple(line.strip() for line in meta.read_text().splitlines() if line.strip())
    except (OSError, UnicodeDecodeError):
        return _CLASSES
    return names if len(names) == len(_CLASSES) else _CLASSES
