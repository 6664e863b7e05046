"""CIFAR-10/100 (python and binary), SVHN and image folders on tiny files in their real formats:
contents, layouts, the restricted unpickler, errors that name the file, the memory guard."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from formats import (
    py2_pickle,
    write_cifar10_python,
    write_cifar100_binary,
    write_cifar100_python,
    write_image_folder,
    write_svhn,
)

from runner.catalog import DATASETS
from runner.data import memory
from runner.data.safe_pickle import ALLOWED_GLOBALS, load_data_pickle
from runner.errors import AdvrunError


def load(name: str, root: Path, **kw):
    spec = SimpleNamespace(dataset=name, path=None, root=str(root), **kw)
    return DATASETS.load(name).load(spec)


def as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255


# ------------------------------------------------------------------- CIFAR-10, python version


@pytest.mark.parametrize("subdir", ["cifar-10-batches-py", ""])
def test_cifar10_python_version(tmp_path: Path, subdir: str) -> None:
    arrays = write_cifar10_python(tmp_path / subdir if subdir else tmp_path)
    ds = load("cifar10", tmp_path)
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(ds.x_train, as_float(arrays["x_train"]))
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    np.testing.assert_array_equal(ds.x_test, as_float(arrays["x_test"]))
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.class_names[:3] == ("airplane", "automobile", "bird") and ds.num_classes == 10


def test_cifar10_python_and_binary_give_the_same_arrays(tmp_path: Path) -> None:
    arrays = write_cifar10_python(tmp_path / "py" / "cifar-10-batches-py")
    binary = tmp_path / "bin" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)
    x, y = arrays["x_train"], arrays["y_train"]
    for i in range(5):
        part = slice(6 * i, 6 * (i + 1))
        rec = np.concatenate([y[part, None].astype(np.uint8), x[part].reshape(6, -1)], axis=1)
        (binary / f"data_batch_{i + 1}.bin").write_bytes(rec.tobytes())
    rec = np.concatenate(
        [arrays["y_test"][:, None].astype(np.uint8), arrays["x_test"].reshape(6, -1)], axis=1
    )
    (binary / "test_batch.bin").write_bytes(rec.tobytes())
    # same content hash: a run does not depend on which version of the files it read
    assert load("cifar10", tmp_path / "py").sha256 == load("cifar10", tmp_path / "bin").sha256


def test_cifar10_python3_repickled_files_load(tmp_path: Path) -> None:
    # a copy saved again by Python 3 (protocol 4, str keys, numpy 2 module names) is fine too
    arrays = write_cifar10_python(tmp_path)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = pickle.loads((tmp_path / name).read_bytes(), encoding="bytes")
        d = {k.decode(): v for k, v in d.items()}
        (tmp_path / name).write_bytes(pickle.dumps(d, protocol=4))
    np.testing.assert_array_equal(load("cifar10", tmp_path).y_train, arrays["y_train"])


class _Payload:
    """Unpickling this runs exec(code): the classic pickle exploit."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def test_malicious_pickle_is_refused_and_its_payload_never_runs(tmp_path: Path) -> None:
    write_cifar10_python(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": _Payload(f"open({str(marker)!r}, 'w').write('pwned')"), b"labels": [0]}
    path = tmp_path / "data_batch_3"
    path.write_bytes(pickle.dumps(evil, protocol=4))
    with pytest.raises(AdvrunError) as err:
        load("cifar10", tmp_path)
    message = str(err.value)
    assert (
        str(path) in message and "builtins.exec" in message and "nothing from the file" in message
    )
    assert not marker.exists()
    # the payload is live: plain pickle.load would have run it
    pickle.loads(path.read_bytes())
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize(
    ("module", "name"), [("os", "system"), ("posix", "system"), ("subprocess", "Popen"),
                         ("numpy", "load"), ("builtins", "eval"), ("_codecs", "encode")],
)  # fmt: skip
def test_only_numpy_array_reconstruction_is_allowed(tmp_path: Path, module: str, name: str) -> None:
    assert (module, name) not in ALLOWED_GLOBALS
    path = tmp_path / "f"
    # protocol 0 by hand: GLOBAL module name, an empty tuple, REDUCE (the call), STOP
    path.write_bytes(f"c{module}\n{name}\n(tR.".encode())
    with pytest.raises(AdvrunError, match=re.escape(f"references {module}.{name}")):
        load_data_pickle(path, "a test file")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable pickle"),
        (b"not a pickle at all", "not a readable pickle"),
        (pickle.dumps([1, 2, 3]), "expected a pickled dict"),
        (py2_pickle({b"labels": [0]}), "'data' must be a uint8 array"),
        (py2_pickle({b"data": np.zeros((1, 3072), np.float32), b"labels": [0]}), "found float32"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "2 integer labels"),
        (py2_pickle({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "label 10"),
        (
            py2_pickle({b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [3]}),
            "use dataset: cifar100",
        ),
    ],
)
def test_cifar10_python_malformed_file_errors(tmp_path: Path, content: bytes, message: str) -> None:
    write_cifar10_python(tmp_path)
    path = tmp_path / "data_batch_2"
    path.write_bytes(content)
    with pytest.raises(AdvrunError, match=message) as err:
        load("cifar10", tmp_path)
    assert str(path) in str(err.value)


def test_cifar10_python_truncated_file(tmp_path: Path) -> None:
    write_cifar10_python(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(AdvrunError, match=rf"{re.escape(str(path))} is not a readable pickle"):
        load("cifar10", tmp_path)


def test_cifar_missing_files_name_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(AdvrunError, match="found none") as err:
        load("cifar10", tmp_path)
    assert "cifar-10-batches-py" in str(err.value) and "data_batch_1" in str(err.value)
    write_cifar10_python(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(AdvrunError, match=r"python version\) files missing in .*: data_batch_4"):
        load("cifar10", tmp_path)
    write_cifar100_python(tmp_path / "c100" / "cifar-100-python", train=10, test=10)
    with pytest.raises(AdvrunError, match="looks like cifar100: use dataset: cifar100"):
        load("cifar10", tmp_path / "c100")


# ------------------------------------------------------------------------------- CIFAR-100


@pytest.mark.parametrize("version", ["python", "binary"])
@pytest.mark.parametrize("labels", [None, "fine", "coarse"])
def test_cifar100_versions_and_label_sets(tmp_path: Path, version: str, labels) -> None:
    if version == "python":
        parts = write_cifar100_python(tmp_path / "cifar-100-python")
    else:
        parts = write_cifar100_binary(tmp_path / "cifar-100-binary")
    ds = load("cifar100", tmp_path, labels=labels)
    x, fine, coarse = parts["train"]
    np.testing.assert_array_equal(ds.x_train, as_float(x))
    np.testing.assert_array_equal(ds.x_test, as_float(parts["test"][0]))
    if labels == "coarse":
        np.testing.assert_array_equal(ds.y_train, coarse)
        assert ds.num_classes == 20
        if version == "python":
            assert ds.class_names[:2] == ("coarse0", "coarse1")
    else:
        np.testing.assert_array_equal(ds.y_train, fine)
        assert ds.num_classes == 100 and ds.class_names[99] == "fine99"


def test_cifar100_binary_bad_label(tmp_path: Path) -> None:
    write_cifar100_binary(tmp_path)
    path = tmp_path / "test.bin"
    raw = bytearray(path.read_bytes())
    raw[1] = 100  # the fine label of the first record
    path.write_bytes(bytes(raw))
    with pytest.raises(AdvrunError, match=rf"{re.escape(str(path))} has label 100"):
        load("cifar100", tmp_path)


# ------------------------------------------------------------------------------------ SVHN


def test_svhn_mat_files_and_label_10_is_digit_0(tmp_path: Path) -> None:
    parts = write_svhn(tmp_path)
    ds = load("svhn", tmp_path)
    x, y = parts["train"]
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(ds.x_train, as_float(x.transpose(3, 2, 0, 1)))
    assert y[9, 0] == 10 and ds.y_train[9] == 0  # 10 means the digit 0
    np.testing.assert_array_equal(ds.y_train, y[:, 0] % 10)
    assert ds.num_classes == 10 and ds.class_names[0] == "0"


def test_svhn_errors(tmp_path: Path) -> None:
    from scipy.io import savemat

    with pytest.raises(AdvrunError, match="train_32x32.mat, test_32x32.mat"):
        load("svhn", tmp_path)
    write_svhn(tmp_path)
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(AdvrunError, match=rf"{re.escape(str(path))} is not a readable MATLAB"):
        load("svhn", tmp_path)
    savemat(path, {"images": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(AdvrunError, match="expected variables X and y, found images"):
        load("svhn", tmp_path)
    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.float64), "y": np.ones((2, 1))})
    with pytest.raises(AdvrunError, match=r"X must be uint8 \(32, 32, 3, N\), found float64"):
        load("svhn", tmp_path)
    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [11]])})
    with pytest.raises(AdvrunError, match=r"labels are 1..10 .*found .* in \[0, 11\]"):
        load("svhn", tmp_path)


# ---------------------------------------------------------------------------- image folder


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_folder_classes_from_folder_names(tmp_path: Path, fmt: str) -> None:
    arrays = write_image_folder(tmp_path, classes=("zebra", "ant", "bee"), fmt=fmt)
    (tmp_path / "ant" / "notes.txt").write_text("skipped")
    (tmp_path / "ant" / ".DS_Store").write_bytes(b"\0")
    ds = load("image_folder", tmp_path)
    assert ds.class_names == ("ant", "bee", "zebra")  # sorted, label k = k-th name
    assert ds.x_train.shape == (12, 3, 6, 8) and ds.x_test is None
    assert ds.y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    first = arrays["ant/000"].transpose(2, 0, 1)
    if fmt == "PNG":  # lossless
        np.testing.assert_array_equal(ds.x_train[0], as_float(first))
    else:  # JPEG is lossy: close, not equal
        assert np.abs(ds.x_train[0] - as_float(first)).mean() < 0.25


def test_image_folder_train_test_layout_and_grayscale(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", classes=("a", "b"), mode="L")
    write_image_folder(tmp_path / "test", classes=("b",), per_class=2, mode="L", seed=1)
    ds = load("image_folder", tmp_path)
    assert ds.x_train.shape == (8, 1, 6, 8) and ds.x_test.shape == (2, 1, 6, 8)
    assert ds.y_test.tolist() == [1, 1] and ds.class_names == ("a", "b")
    rgb = load("image_folder", tmp_path, channels=3)
    assert rgb.x_train.shape == (8, 3, 6, 8)


def test_image_folder_sizes_differ_refuse_or_resize(tmp_path: Path) -> None:
    write_image_folder(tmp_path, classes=("a", "b"), size=(8, 6))
    write_image_folder(tmp_path, classes=("c",), size=(10, 10), per_class=2)
    with pytest.raises(AdvrunError, match=r"images differ in size: .*8x6 but .*c/000.png is 10x10"):
        load("image_folder", tmp_path)
    ds = load("image_folder", tmp_path, image_size=(5, 7))
    assert ds.x_train.shape == (10, 3, 5, 7) and ds.num_classes == 3


def test_image_folder_errors(tmp_path: Path) -> None:
    write_image_folder(tmp_path, classes=("a",))
    with pytest.raises(AdvrunError, match="1 class folder"):
        load("image_folder", tmp_path)
    (tmp_path / "b").mkdir()
    with pytest.raises(AdvrunError, match=r"class folder .*b has no"):
        load("image_folder", tmp_path)
    bad = tmp_path / "b" / "000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(AdvrunError, match=rf"{re.escape(str(bad))}: not a readable PNG/JPEG"):
        load("image_folder", tmp_path)
    good = tmp_path / "a" / "000.png"
    bad.write_bytes(good.read_bytes()[:60])  # a valid header, truncated pixels
    with pytest.raises(AdvrunError, match=rf"{re.escape(str(bad))}: cannot decode"):
        load("image_folder", tmp_path)
    from PIL import Image

    Image.new("RGB", (8, 6)).save(bad, format="BMP")  # a BMP named .png
    with pytest.raises(AdvrunError, match="expected a PNG or JPEG image, found BMP"):
        load("image_folder", tmp_path)


# ------------------------------------------------------------------------------- memory guard


def test_available_memory_is_read() -> None:
    have = memory.available_bytes()
    assert have is None or have > 0
    assert memory.human(703.1 * 2**20) == "703.1 MiB"
    assert (
        memory.describe(60000, (3, 32, 32)) == "60,000 images of 3x32x32 take 703.1 MiB as float32"
    )


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "image_folder"])
def test_data_that_would_not_fit_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    {
        "cifar10": lambda: write_cifar10_python(tmp_path),
        "cifar100": lambda: write_cifar100_python(tmp_path),
        "svhn": lambda: write_svhn(tmp_path),
        "image_folder": lambda: write_image_folder(tmp_path),
    }[name]()
    monkeypatch.setattr(memory, "available_bytes", lambda: 10_000)
    with pytest.raises(AdvrunError, match=r"images of .* take .* but this machine has 9.8 KiB"):
        load(name, tmp_path)
