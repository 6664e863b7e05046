"""A folder of images, one sub-folder per class: ``root/<class>/<image>.png|jpg|jpeg``.

With ``root/train/<class>/`` and ``root/test/<class>/`` the test folder is the official test
split. Class names are the folder names, sorted (label k is the k-th name, as torchvision's
``ImageFolder`` numbers them); files are read in sorted order, so the arrays, and their hash,
are the same on every machine. Hidden files and files with other extensions are skipped.

Images are decoded with Pillow. When their sizes differ, ``data.image_size: [H, W]`` resizes all
of them (bilinear, antialiased); without it the loader refuses and names two files that differ.
``data.channels`` picks grayscale (1) or RGB (3); the default is 3 unless every image is
grayscale.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.data import Dataset, DataSpecLike, make_dataset, uint8_to_float01
from runner.data.memory import reserve
from runner.data.source import DataSource
from runner.errors import AdvrunError

if TYPE_CHECKING:
    import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_LAYOUT = "root/<class>/<image>.png|jpg|jpeg (or root/train/<class>/... and root/test/<class>/...)"


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency of advrun
        raise AdvrunError(
            "dataset 'image_folder' needs Pillow, which is missing here: pip install pillow"
        ) from None
    return Image


def load(spec: DataSpecLike) -> Dataset:
    import numpy as np

    if not getattr(spec, "root", None):
        raise AdvrunError(f"dataset 'image_folder' needs data.root, a folder laid out as {_LAYOUT}")
    root = Path(str(spec.root)).expanduser()
    if not root.is_dir():
        raise AdvrunError(f"data.root {root} is not a directory; expected {_LAYOUT}")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split else root
    classes = _class_dirs(train_root)
    train_files = _files(train_root, classes)
    test_files = None
    if split:
        test_classes = _class_dirs(root / "test", minimum=1)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise AdvrunError(
                f"{root / 'test'} has class folder(s) {', '.join(unknown)} that {train_root} "
                "does not have; the test classes must be among the training classes"
            )
        test_files = _files(root / "test", test_classes, classes.index)
    image = _pillow()
    every = train_files + (test_files or [])
    headers = [_header(image, p) for p, _ in every]
    size = getattr(spec, "image_size", None)
    if size is None:
        first = headers[0][0]
        for (path, _), (wh, _) in zip(every, headers, strict=True):
            if wh != first:
                raise AdvrunError(
                    f"image_folder: images differ in size: {every[0][0]} is {first[0]}x{first[1]} "
                    f"but {path} is {wh[0]}x{wh[1]} (width x height); set data.image_size: "
                    "[height, width] to resize them all"
                )
        height, width = first[1], first[0]
    else:
        height, width = (int(v) for v in size)
    channels = getattr(spec, "channels", None)
    if channels is None:
        channels = 1 if all(mode in _GRAY_MODES for _, mode in headers) else 3
    reserve("image_folder", len(every), (channels, height, width), f"from {root}")
    x = _decode(image, [p for p, _ in every], channels, height, width)
    y = np.array([label for _, label in every], dtype=np.int64)
    n = len(train_files)
    return make_dataset(
        "image_folder",
        x[:n],
        y[:n],
        x[n:] if split else None,
        y[n:] if split else None,
        num_classes=len(classes),
        class_names=tuple(classes),
        where=str(root),
    )


def _class_dirs(folder: Path, minimum: int = 2) -> list[str]:
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(names) < minimum:
        found = ", ".join(names) or "none"
        raise AdvrunError(
            f"image_folder: {folder} has {len(names)} class folder(s) ({found}); "
            + ("a classifier needs at least 2" if minimum == 2 else "the test split needs one")
            + f"; expected {_LAYOUT}"
        )
    return names


def _files(folder: Path, classes: list[str], label_of=None) -> list[tuple[Path, int]]:
    out = []
    for i, name in enumerate(classes):
        files = sorted(
            p
            for p in (folder / name).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS
        )
        if not files:
            raise AdvrunError(
                f"image_folder: class folder {folder / name} has no {'/'.join(EXTENSIONS)} "
                "images; remove it or add its images"
            )
        label = label_of(name) if label_of else i
        out += [(p, label) for p in files]
    return out


def _header(image: Any, path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and mode from the file header (Pillow decodes lazily)."""
    try:
        with image.open(path) as img:
            if img.format not in ("PNG", "JPEG", "MPO"):  # MPO: multi-picture JPEG from cameras
                raise AdvrunError(
                    f"{path}: expected a PNG or JPEG image, found {img.format or 'an unknown'} "
                    "format; convert it or remove it"
                )
            return img.size, img.mode
    except AdvrunError:
        raise
    except Exception as e:  # UnidentifiedImageError, OSError, ...
        raise AdvrunError(
            f"{path}: not a readable PNG/JPEG image ({type(e).__name__}: {str(e)[:120]})"
        ) from None


def _decode(image: Any, paths: list[Path], channels: int, height: int, width: int) -> np.ndarray:
    import numpy as np

    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with image.open(path) as img:
                img = img.convert(mode)
                if img.size != (width, height):
                    img = img.resize((width, height), image.Resampling.BILINEAR)
                out[i] = np.asarray(img, dtype=np.uint8).reshape(height, width, channels)
        except Exception as e:  # a truncated or corrupt file fails only when decoded
            raise AdvrunError(
                f"{path}: cannot decode this image ({type(e).__name__}: {str(e)[:120]}); the "
                "file is truncated or corrupt"
            ) from None
    return uint8_to_float01(out.transpose(0, 3, 1, 2))


class ImageFolder(DataSource):
    """PNG/JPEG images in root/<class>/ (or root/train/<class>/ and root/test/<class>/)."""

    needs = "root"
    options = ("image_size", "channels")
    load = staticmethod(load)

    @classmethod
    def known_shape(cls, data: Any) -> tuple[int, int, int] | None:
        """(channels, *image_size) when the spec gives both."""
        size, channels = getattr(data, "image_size", None), getattr(data, "channels", None)
        if size is not None and channels is not None:
            return (channels, *size)
        return None
