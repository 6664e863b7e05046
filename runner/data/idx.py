"""MNIST, Fashion-MNIST and Kuzushiji-MNIST from their IDX files (plain or gzipped).

Files are looked for in ``root`` and in ``root/<Name>/raw`` (torchvision's layout). The IDX
header (two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension) is parsed and checked here, so that a wrong or truncated file gives an error that
names it instead of a reshape traceback.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.data import Dataset, DataSpecLike, make_dataset, uint8_to_float01
from runner.data.source import DataSource
from runner.errors import AdvrunError

if TYPE_CHECKING:
    import numpy as np

_UBYTE = 0x08  # IDX type code of unsigned bytes, the only one these data sets use
_IMAGES_MAGIC = 0x00000803  # ubyte, 3 dims (N, rows, cols)
_LABELS_MAGIC = 0x00000801  # ubyte, 1 dim (N,)
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class _Source:
    name: str  # registry name
    title: str  # for messages
    dirname: str  # torchvision's folder name: root/<dirname>/raw
    where_to_get: str
    class_names: tuple[str, ...]


_MNIST = _Source(
    "mnist",
    "MNIST",
    "MNIST",
    "download them from https://yann.lecun.com/exdb/mnist/ (or let "
    "torchvision.datasets.MNIST(root, download=True) fetch them)",
    tuple(str(i) for i in range(10)),
)
_FASHION = _Source(
    "fashion_mnist",
    "Fashion-MNIST",
    "FashionMNIST",
    "download them from https://github.com/zalandoresearch/fashion-mnist",
    (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)
_KMNIST = _Source(
    "kmnist",
    "Kuzushiji-MNIST",
    "KMNIST",
    "download the MNIST-format (IDX) files from https://github.com/rois-codh/kmnist",
    ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
)


def load_mnist(spec: DataSpecLike) -> Dataset:
    """MNIST: 60k train + 10k official test, 1x28x28."""
    return _load(_MNIST, spec)


def load_fashion_mnist(spec: DataSpecLike) -> Dataset:
    """Fashion-MNIST: 60k train + 10k official test, 1x28x28."""
    return _load(_FASHION, spec)


def load_kmnist(spec: DataSpecLike) -> Dataset:
    """Kuzushiji-MNIST: 60k train + 10k official test, 1x28x28."""
    return _load(_KMNIST, spec)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file (gzipped or not) as a uint8 array, checked against its header."""
    import numpy as np

    data = _read_bytes(path)
    kind = "image" if magic == _IMAGES_MAGIC else "label"
    if len(data) < 4:
        raise AdvrunError(f"{path} is too short ({len(data)} bytes) to be an IDX {kind} file")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise AdvrunError(
            f"{path} is not an IDX {kind} file: magic number 0x{got:08x}, expected 0x{magic:08x}; "
            "the file is corrupt, misnamed, or not in IDX format"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise AdvrunError(f"{path} is truncated inside its IDX header; download it again")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise AdvrunError(
            f"{path} is {state}: header says {dims} -> {expected} bytes, file has {len(data)}; "
            "download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        # decide by content, not name: some mirrors serve gzip data without the .gz suffix
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise AdvrunError(
            f"cannot read {path} ({exc}); the file is corrupt, download it again"
        ) from None


def _candidates(base: str) -> list[str]:
    # Kaggle's MNIST copy names files "train-images.idx3-ubyte"
    dotted = base.replace("-idx", ".idx")
    return [base, base + ".gz", dotted, dotted + ".gz"]


def _find(directory: Path, base: str) -> Path | None:
    for name in _candidates(base):
        if (directory / name).is_file():
            return directory / name
    return None


def _locate(src: _Source, spec: DataSpecLike) -> dict[str, Path]:
    """The four IDX files from the first folder that holds all of them."""
    if not getattr(spec, "root", None):
        raise AdvrunError(
            f"dataset '{src.name}' needs data.root: the folder with the {src.title} IDX files; "
            f"{src.where_to_get}"
        )
    root = Path(str(spec.root)).expanduser()
    if not root.is_dir():
        raise AdvrunError(
            f"data.root {root} is not a directory; create it, put the {src.title} IDX files "
            f"({', '.join(_FILES.values())}, optionally .gz) there and {src.where_to_get}"
        )
    folders = [root, root / src.dirname / "raw", root / src.dirname]
    best: tuple[Path, dict[str, Path | None]] | None = None
    for folder in folders:
        found = {key: _find(folder, base) for key, base in _FILES.items()}
        if all(found.values()):
            return {k: v for k, v in found.items() if v is not None}
        if best is None or sum(map(bool, found.values())) > sum(map(bool, best[1].values())):
            best = (folder, found)
    assert best is not None
    folder, found = best
    missing = [_FILES[k] for k, v in found.items() if v is None]
    if len(missing) == len(_FILES):
        searched = ", ".join(str(f) for f in folders)
        raise AdvrunError(
            f"expected {src.title} IDX files ({', '.join(_FILES.values())}, optionally .gz) "
            f"under {root}, but none were found (searched {searched}); {src.where_to_get} "
            "and point data.root at that folder"
        )
    raise AdvrunError(
        f"{src.title} IDX files missing in {folder}: {', '.join(missing)} (or .gz); "
        f"{src.where_to_get} and put them next to the others"
    )


def _load(src: _Source, spec: DataSpecLike) -> Dataset:
    import numpy as np

    paths = _locate(src, spec)
    arrays: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        img_path, lab_path = paths[f"{part}_images"], paths[f"{part}_labels"]
        images = read_idx(img_path, _IMAGES_MAGIC)
        labels = read_idx(lab_path, _LABELS_MAGIC)
        if len(images) != len(labels):
            raise AdvrunError(
                f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels; "
                "the files do not belong together, download them again"
            )
        if labels.size and labels.max() >= len(src.class_names):
            raise AdvrunError(
                f"{lab_path} has label {int(labels.max())}, but {src.title} has "
                f"{len(src.class_names)} classes; the file is corrupt or from another data set"
            )
        arrays[f"x_{part}"] = uint8_to_float01(images[:, None, :, :])
        arrays[f"y_{part}"] = labels.astype(np.int64)
    return make_dataset(
        src.name,
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        num_classes=len(src.class_names),
        class_names=src.class_names,
        where=str(paths["train_images"].parent),
    )


class MNIST(DataSource):
    """MNIST from IDX files under root."""

    needs = "root"
    shape = (1, 28, 28)
    flip = False
    load = staticmethod(load_mnist)


class FashionMNIST(DataSource):
    """Fashion-MNIST IDX files."""

    needs = "root"
    shape = (1, 28, 28)
    load = staticmethod(load_fashion_mnist)


class KMNIST(DataSource):
    """Kuzushiji-MNIST IDX files."""

    needs = "root"
    shape = (1, 28, 28)
    flip = False
    load = staticmethod(load_kmnist)
