"""Writers of tiny files in the real on-disk formats of CIFAR (python and binary versions), SVHN
and image folders, shared by the data-format tests and the reference-spec smoke tests."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                 b"dog", b"frog", b"horse", b"ship", b"truck"]  # fmt: skip


class _Py2Pickler(pickle._Pickler):  # noqa: SLF001 - the pure-Python pickler, to override bytes
    """Protocol 2 as Python 2's cPickle wrote the CIFAR files: strings as BINSTRING opcodes
    (Python 3 would wrap bytes in _codecs.encode calls, which the real files do not have)."""

    dispatch = dict(pickle._Pickler.dispatch)  # noqa: SLF001

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def py2_pickle(obj: object) -> bytes:
    """``obj`` pickled the way the original CIFAR python files are (numpy 1.x module names)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_arrays(
    n: int, seed: int, classes: int = 10, signal: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """n 3x32x32 uint8 images with labels 0, 1, ...; uniform noise, or with ``signal`` a
    class colour (the same for every seed) plus noise, which a small model learns in a few steps."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).astype(np.int64)
    if not signal:
        return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), labels
    colours = np.random.default_rng(1234).uniform(40, 215, (classes, 3, 1, 1))
    images = colours[labels] + rng.normal(0, 30, (n, 3, 32, 32))
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_cifar10_python(
    folder: Path, per_batch: int = 6, test: int = 6, seed: int = 0, signal: bool = False
) -> dict[str, np.ndarray]:
    """cifar-10-batches-py: data_batch_1..5, test_batch, batches.meta (py2 pickles)."""
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x, y = cifar_arrays(per_batch, seed + i, signal=signal)
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [int(v) for v in y],
            b"data": x.reshape(per_batch, -1),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)],
        }
        (folder / f"data_batch_{i}").write_bytes(py2_pickle(batch))
        xs.append(x)
        ys.append(y)
    x_test, y_test = cifar_arrays(test, seed + 99, signal=signal)
    test_batch = {b"batch_label": b"testing batch 1 of 1", b"labels": list(map(int, y_test)),
                  b"data": x_test.reshape(test, -1), b"filenames": [b"t.png"] * test}  # fmt: skip
    (folder / "test_batch").write_bytes(py2_pickle(test_batch))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": CIFAR10_NAMES, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys),
            "x_test": x_test, "y_test": y_test}  # fmt: skip


def write_cifar100_python(folder: Path, train: int = 200, test: int = 100, seed: int = 0):
    """cifar-100-python: train, test, meta (py2 pickles with fine and coarse labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, n in (("train", train), ("test", test)):
        x, fine = cifar_arrays(n, seed + len(part), classes=100)
        coarse = fine // 5
        d = {b"filenames": [b"x.png"] * n, b"batch_label": part.encode(),
             b"fine_labels": list(map(int, fine)), b"coarse_labels": list(map(int, coarse)),
             b"data": x.reshape(n, -1)}  # fmt: skip
        (folder / part).write_bytes(py2_pickle(d))
        out[part] = (x, fine, coarse)
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}  # fmt: skip
    (folder / "meta").write_bytes(py2_pickle(meta))
    return out


def write_cifar100_binary(folder: Path, train: int = 200, test: int = 100, seed: int = 0):
    """cifar-100-binary: train.bin, test.bin; records coarse byte, fine byte, 3072 pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, n in (("train", train), ("test", test)):
        x, fine = cifar_arrays(n, seed + len(part), classes=100)
        coarse = fine // 5
        rec = np.concatenate(
            [coarse[:, None].astype(np.uint8), fine[:, None].astype(np.uint8), x.reshape(n, -1)],
            axis=1,
        )
        (folder / f"{part}.bin").write_bytes(rec.tobytes())
        out[part] = (x, fine, coarse)
    (folder / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)))
    return out


def write_svhn(folder: Path, train: int = 30, test: int = 20, seed: int = 0):
    """train_32x32.mat / test_32x32.mat: X uint8 (32, 32, 3, N), y (N, 1) in 1..10."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", train), ("test", test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 is the digit 0
        savemat(folder / f"{part}_32x32.mat", {"X": x, "y": y})
        out[part] = (x, y)
    return out


def write_image_folder(
    root: Path, classes=("cat", "dog"), per_class: int = 4, size=(8, 6), seed: int = 0,
    fmt: str = "PNG", mode: str = "RGB",
) -> dict[str, np.ndarray]:  # fmt: skip
    """root/<class>/<i>.png (or .jpg) images of ``size`` (width, height)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ext = ".png" if fmt == "PNG" else ".jpg"
    arrays = {}
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            a = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(a).save(root / name / f"{i:03d}{ext}", format=fmt)
            arrays[f"{name}/{i:03d}"] = a
    return arrays
