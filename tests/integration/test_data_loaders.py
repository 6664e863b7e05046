"""Data loaders on tiny files in the real on-disk formats, and the train/val/test split."""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import formats
import numpy as np
import pytest

from runner.catalog import DATASETS
from runner.data import Dataset, make_dataset, split
from runner.errors import AdvrunError

IDX_NAMES = ["mnist", "fashion_mnist", "kmnist"]
IDX_DIRS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
N_TRAIN, N_TEST = 40, 20


def spec(name: str, path: Path | None = None, root: Path | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        dataset=name,
        path=None if path is None else str(path),
        root=None if root is None else str(root),
    )


def load(name: str, **kw: Path) -> Dataset:
    return DATASETS.load(name).load(spec(name, **kw))


# ---------------------------------------------------------------- writers of the real formats


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX: 0, 0, type code 0x08 (ubyte), ndim, then big-endian uint32 dims, then the data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def idx_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(N_TEST)[::-1] % 10).astype(np.uint8),
    }


def write_idx(folder: Path, gz: bool = False, arrays: dict | None = None) -> dict[str, np.ndarray]:
    arrays = arrays or idx_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def cifar_records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    """n records: label byte + 1024 R + 1024 G + 1024 B (row-major 32x32 planes)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    raw = b"".join(bytes([labels[i]]) + images[i].tobytes() for i in range(n))
    return images, labels, raw


def write_cifar(folder: Path, per_batch: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for i in range(1, 6):
        images, labels, raw = cifar_records(per_batch, seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(raw)
        train.append((images, labels))
    test_images, _, raw = cifar_records(per_batch, seed=99)
    (folder / "test_batch.bin").write_bytes(raw)
    return (
        np.concatenate([t[0] for t in train]),
        np.concatenate([t[1] for t in train]),
        test_images,
    )


# ------------------------------------------------- every registered data set, one builder each


def _build_digits(tmp_path: Path) -> SimpleNamespace:
    return spec("digits")


def _build_npz(tmp_path: Path) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.integers(0, 256, (30, 12, 12), dtype=np.uint8), y=np.arange(30) % 3)
    return spec("npz", path=path)


def _build_idx(name: str) -> Callable[[Path], SimpleNamespace]:
    def build(tmp_path: Path) -> SimpleNamespace:
        write_idx(tmp_path)
        return spec(name, root=tmp_path)

    return build


def _build_cifar(tmp_path: Path) -> SimpleNamespace:
    write_cifar(tmp_path)
    return spec("cifar10", root=tmp_path)


def _build_with(name: str, writer: Callable[[Path], object]) -> Callable[[Path], SimpleNamespace]:
    def build(tmp_path: Path) -> SimpleNamespace:
        writer(tmp_path)
        return spec(name, root=tmp_path)

    return build


BUILDERS = {
    "digits": _build_digits,
    "npz": _build_npz,
    "mnist": _build_idx("mnist"),
    "fashion_mnist": _build_idx("fashion_mnist"),
    "kmnist": _build_idx("kmnist"),
    "cifar10": _build_cifar,
    "cifar100": _build_with("cifar100", formats.write_cifar100_python),
    "svhn": _build_with("svhn", formats.write_svhn),
    "image_folder": _build_with("image_folder", formats.write_image_folder),
}


def test_every_registered_dataset_has_a_builder_here() -> None:
    assert set(BUILDERS) == set(DATASETS.names())


@pytest.mark.parametrize("name", DATASETS.names())
def test_registered_dataset_meets_the_contract(name: str, tmp_path: Path) -> None:
    s = BUILDERS[name](tmp_path)
    ds = DATASETS.load(name).load(s)
    assert isinstance(ds, Dataset) and ds.name == name
    parts = [(ds.x_train, ds.y_train)]
    if ds.x_test is not None:
        parts.append((ds.x_test, ds.y_test))
    for x, y in parts:
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1] in (1, 3)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert y.min() >= 0 and y.max() < ds.num_classes
    assert re.fullmatch(r"[0-9a-f]{64}", ds.sha256)
    assert DATASETS.load(name).load(s).sha256 == ds.sha256  # the hash is reproducible


# ------------------------------------------------------------------------------------ digits


def test_digits_shape_scale_and_hash() -> None:
    from sklearn.datasets import load_digits

    ds = load("digits")
    assert ds.x_train.shape == (1797, 1, 8, 8) and ds.x_test is None and ds.num_classes == 10
    raw = load_digits()
    np.testing.assert_array_equal(ds.x_train[5, 0] * 16, raw.images[5])
    np.testing.assert_array_equal(ds.y_train, raw.target)
    # pinned: recorded runs compare this hash, so a change in scaling or hashing must be deliberate
    assert ds.sha256 == "f14e68eeb20316569772a757972121dd0c51cb6ef477dce95a9c5abe4756016e"


# ------------------------------------------------------------------------------- IDX (MNIST)


@pytest.mark.parametrize("name", IDX_NAMES)
@pytest.mark.parametrize("layout", ["flat", "flat-gz", "torchvision-raw", "torchvision-raw-gz"])
def test_idx_layouts(name: str, layout: str, tmp_path: Path) -> None:
    folder = tmp_path / IDX_DIRS[name] / "raw" if layout.startswith("torchvision") else tmp_path
    arrays = write_idx(folder, gz=layout.endswith("gz"))
    ds = load(name, root=tmp_path)
    assert ds.x_train.shape == (N_TRAIN, 1, 28, 28) and ds.x_test.shape == (N_TEST, 1, 28, 28)
    assert ds.num_classes == 10 and len(ds.class_names) == 10
    np.testing.assert_array_equal(
        ds.x_train[:, 0], arrays["train-images-idx3-ubyte"].astype(np.float32) / 255
    )
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_idx_full_range_pixels(tmp_path: Path) -> None:
    arrays = idx_arrays()
    arrays["train-images-idx3-ubyte"][0] = 255
    arrays["train-images-idx3-ubyte"][1] = 0
    write_idx(tmp_path, arrays=arrays)
    ds = load("mnist", root=tmp_path)
    assert (ds.x_train[0] == 1.0).all() and (ds.x_train[1] == 0.0).all()


@pytest.mark.parametrize("name", IDX_NAMES)
def test_idx_missing_root_and_files(name: str, tmp_path: Path) -> None:
    with pytest.raises(AdvrunError, match="needs data.root"):
        DATASETS.load(name).load(spec(name))
    missing = tmp_path / "nowhere"
    with pytest.raises(AdvrunError, match=re.escape(str(missing))):
        load(name, root=missing)
    with pytest.raises(AdvrunError, match=rf"none were found.*{re.escape(str(tmp_path))}"):
        load(name, root=tmp_path)
    write_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(AdvrunError, match=r"missing in .*: t10k-labels-idx1-ubyte") as err:
        load(name, root=tmp_path)
    assert str(tmp_path) in str(err.value)


def _corrupt_swapped(folder: Path) -> str:
    # a labels file where the images file should be: the magic number tells them apart
    images, labels = folder / "train-images-idx3-ubyte", folder / "train-labels-idx1-ubyte"
    images.write_bytes(labels.read_bytes())
    return "magic number"


def _corrupt_truncated(folder: Path) -> str:
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    return "truncated"


def _corrupt_header(folder: Path) -> str:
    (folder / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0]))
    return "truncated inside its IDX header"


def _corrupt_empty(folder: Path) -> str:
    (folder / "train-labels-idx1-ubyte").write_bytes(b"")
    return "too short"


def _corrupt_count(folder: Path) -> str:
    labels = (np.arange(N_TRAIN - 1) % 10).astype(np.uint8)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return "images but"


def _corrupt_label(folder: Path) -> str:
    labels = np.full(N_TRAIN, 10, dtype=np.uint8)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return "label 10"


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_swapped,
        _corrupt_truncated,
        _corrupt_header,
        _corrupt_empty,
        _corrupt_count,
        _corrupt_label,
    ],
)
def test_idx_corrupt_files(corrupt: Callable[[Path], str], tmp_path: Path) -> None:
    write_idx(tmp_path)
    expected = corrupt(tmp_path)
    with pytest.raises(AdvrunError, match=expected) as err:
        load("mnist", root=tmp_path)
    assert str(tmp_path) in str(err.value)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    write_idx(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(AdvrunError, match=re.escape(str(path))):
        load("mnist", root=tmp_path)


# ------------------------------------------------------------------------------------ CIFAR-10


@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-bin"])
def test_cifar_records(subdir: str, tmp_path: Path) -> None:
    x_train, y_train, x_test = write_cifar(tmp_path / subdir if subdir else tmp_path)
    ds = load("cifar10", root=tmp_path)
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(ds.x_train, x_train.astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.x_test, x_test.astype(np.float32) / 255)
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10


def test_cifar_plane_order(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    # one record by hand: label 7, R plane 0..255 row-major ramp, G all 1, B all 2
    red = (np.arange(1024) % 256).astype(np.uint8)
    raw = bytes([7]) + red.tobytes() + bytes([1] * 1024) + bytes([2] * 1024)
    (tmp_path / "test_batch.bin").write_bytes(raw)
    (tmp_path / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    ds = load("cifar10", root=tmp_path)
    assert ds.y_test.tolist() == [7]
    np.testing.assert_array_equal(ds.x_test[0, 0] * 255, red.reshape(32, 32))
    assert (ds.x_test[0, 1] == np.float32(1 / 255)).all()
    assert (ds.x_test[0, 2] == np.float32(2 / 255)).all()
    assert ds.class_names == tuple(f"c{i}" for i in range(10))


def test_cifar_errors(tmp_path: Path) -> None:
    with pytest.raises(AdvrunError, match="found none"):
        load("cifar10", root=tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(AdvrunError, match=r"missing in .*test_batch.bin"):
        load("cifar10", root=tmp_path)
    _, _, raw = cifar_records(2, seed=0)
    (tmp_path / "test_batch.bin").write_bytes(raw[:-1])
    with pytest.raises(AdvrunError, match=re.escape(str(tmp_path / "test_batch.bin"))):
        load("cifar10", root=tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(bytes([10]) + raw[1:])  # CIFAR-100-like label
    with pytest.raises(AdvrunError, match="label 10"):
        load("cifar10", root=tmp_path)


# ----------------------------------------------------------------------------------------- npz


def _npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


RNG = np.random.default_rng(0)
U8_NHWC = RNG.integers(0, 256, (12, 5, 6, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        pytest.param(U8_NHWC[..., 0], U8_NHWC[:, None, :, :, 0] / 255, id="NHW-uint8"),
        pytest.param(U8_NHWC, U8_NHWC.transpose(0, 3, 1, 2) / 255, id="NHWC-uint8"),
        pytest.param(U8_NHWC[..., :1], U8_NHWC[..., :1].transpose(0, 3, 1, 2) / 255, id="NHW1"),
        pytest.param(
            U8_NHWC.transpose(0, 3, 1, 2) / 255.0,
            U8_NHWC.transpose(0, 3, 1, 2) / 255,
            id="NCHW-f64",
        ),
        pytest.param(
            np.zeros((12, 4, 4, 3), np.float32), np.zeros((12, 3, 4, 4)), id="ambiguous-NHWC"
        ),
        pytest.param(
            np.zeros((12, 3, 4, 4), np.float32), np.zeros((12, 3, 4, 4)), id="ambiguous-NCHW"
        ),
    ],
)
def test_npz_image_layouts(x: np.ndarray, expected: np.ndarray, tmp_path: Path) -> None:
    ds = load("npz", path=_npz(tmp_path, x=x, y=np.arange(12) % 4))
    assert ds.x_train.dtype == np.float32 and ds.x_test is None and ds.num_classes == 4
    np.testing.assert_allclose(ds.x_train, expected, rtol=1e-6)


def test_npz_one_hot_and_official_split(tmp_path: Path) -> None:
    y = np.arange(10) % 3
    one_hot = np.eye(5, dtype=np.float32)[y]  # 5 classes declared, only 3 used
    path = _npz(
        tmp_path,
        x_train=U8_NHWC[:10],
        y_train=one_hot,
        x_test=U8_NHWC[10:],
        y_test=np.array([4.0, 0.0]),  # integral floats are accepted as indices
    )
    ds = load("npz", path=path)
    assert ds.num_classes == 5
    np.testing.assert_array_equal(ds.y_train, y)
    assert ds.y_test.tolist() == [4, 0] and ds.x_test.shape == (2, 3, 5, 6)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.full((4, 5, 5), 2.0), "y": np.zeros(4)}, r"outside \[0, 1\]"),
        ({"x": np.full((4, 5, 5), np.nan), "y": np.zeros(4)}, "NaN"),
        ({"x": np.zeros((4, 5, 5), np.int32), "y": np.zeros(4)}, "dtype int32"),
        ({"x": np.zeros((4, 5, 5), np.uint8), "y": np.zeros(3)}, "4 train images but 3"),
        ({"x": np.zeros((4, 5, 5), np.uint8), "y": np.full(4, 0.5)}, "non-integer labels"),
        ({"x": np.zeros((4, 5, 5), np.uint8), "y": -np.ones(4)}, "negative label"),
        ({"x": np.zeros((4, 5, 5, 7), np.uint8), "y": np.zeros(4)}, "channel axis"),
        ({"images": np.zeros((4, 5, 5)), "labels": np.zeros(4)}, "expected either x and y"),
        (
            {"x_train": np.zeros((4, 5, 5)), "y_train": np.zeros(4), "x_test": np.zeros((2, 5, 5))},
            "only one of x_test/y_test",
        ),
        ({"x": np.array([object()] * 4, dtype=object), "y": np.zeros(4)}, "pickled"),
        (
            {
                "x_train": np.zeros((4, 5, 5)),
                "y_train": np.eye(3)[[0, 1, 2, 0]],
                "x_test": np.zeros((2, 5, 5)),
                "y_test": np.eye(4)[[0, 3]],
            },
            "3 columns for train but 4",
        ),
    ],
)
def test_npz_bad_contents(arrays: dict, message: str, tmp_path: Path) -> None:
    path = _npz(tmp_path, **arrays)
    with pytest.raises(AdvrunError, match=message) as err:
        load("npz", path=path)
    assert str(path) in str(err.value)


def test_npz_bad_files(tmp_path: Path) -> None:
    with pytest.raises(AdvrunError, match="needs data.path"):
        DATASETS.load("npz").load(spec("npz"))
    missing = tmp_path / "missing.npz"
    with pytest.raises(AdvrunError, match=re.escape(str(missing))):
        load("npz", path=missing)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(AdvrunError, match=re.escape(str(junk))):
        load("npz", path=junk)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(AdvrunError, match="single array"):
        load("npz", path=npy)


# -------------------------------------------------------------------------------------- split


def pool(n_per_class: tuple[int, ...] = (40, 30, 20, 10)) -> Dataset:
    """A pool whose pixel [0, 0, 0] is the example's index / 1000 (pixels stay in [0, 1]), to
    check disjointness."""
    y = np.concatenate([np.full(n, k) for k, n in enumerate(n_per_class)]).astype(np.int64)
    x = np.zeros((len(y), 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = np.arange(len(y)) / 1000
    return make_dataset("pool", x, y)


def index(x: np.ndarray) -> np.ndarray:
    return np.rint(x[:, 0, 0, 0] * 1000).astype(int)


def ids(x: np.ndarray) -> set[int]:
    return set(index(x).tolist())


def test_split_pool_is_disjoint_stratified_and_complete() -> None:
    ds = pool()
    s = split(ds, val_fraction=0.2, test_fraction=0.3, seed=0)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (50, 20, 30)
    train, val, test = ids(s.x_train), ids(s.x_val), ids(s.x_test)
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(100))
    for x, y in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
        np.testing.assert_array_equal(y, ds.y_train[index(x)])  # pairs intact
        expected = np.array([0.4, 0.3, 0.2, 0.1]) * len(y)
        assert np.abs(np.bincount(y, minlength=4) - expected).max() <= 1  # stratified


def test_split_is_deterministic_and_seeded() -> None:
    ds = pool()
    a, b = split(ds, 0.2, 0.2, seed=3), split(ds, 0.2, 0.2, seed=3)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = split(ds, 0.2, 0.2, seed=4)
    assert ids(a.x_test) != ids(c.x_test) and ids(a.x_val) != ids(c.x_val)


def test_split_uses_the_official_test_set() -> None:
    base = pool()
    x_test = np.full((8, 1, 2, 2), 0.5, np.float32)
    y_test = (np.arange(8) % 4).astype(np.int64)
    ds = make_dataset("pool", base.x_train, base.y_train, x_test, y_test)
    s = split(ds, val_fraction=0.1, test_fraction=0.9, seed=0)  # test_fraction is ignored
    assert s.x_test is ds.x_test and s.y_test is ds.y_test
    assert (len(s.y_train), len(s.y_val)) == (90, 10)
    assert not ids(s.x_train) & ids(s.x_val)


def test_split_without_val() -> None:
    s = split(pool(), val_fraction=0.0, test_fraction=0.25, seed=0)
    assert s.x_val.shape == (0, 1, 2, 2) and s.y_val.shape == (0,) and s.y_val.dtype == np.int64
    assert len(s.y_train) == 75


@pytest.mark.parametrize(
    ("val", "test", "message"),
    [
        (-0.1, 0.2, "val_fraction"),
        (0.2, 1.0, "test_fraction"),
        (0.5, 0.5, "some data is left"),
        (0.0, 0.02, "stratified test split"),  # 2 examples cannot cover 4 classes
    ],
)
def test_split_rejects_bad_fractions(val: float, test: float, message: str) -> None:
    with pytest.raises(AdvrunError, match=message):
        split(pool(), val, test, seed=0)


def test_split_digits_end_to_end() -> None:
    s = split(load("digits"), val_fraction=0.1, test_fraction=0.2, seed=0)
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 1797
    assert set(np.unique(s.y_val)) == set(range(10))
