"""What a file is, from its first bytes and (for a zip) its member names: nothing is unpickled.

:func:`identify` names the three formats advrun loads (torch's zip and legacy serialization,
safetensors) and, for every other file, what it is and one concrete way to convert it. Telling a
file's format from its content, never its extension, is what keeps a valid legacy checkpoint from
being called "truncated" (the false diagnosis of issue 18).
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from runner.checkpoint.formats import (
    FORMAT_NAMES,
    HDF5_MAGIC,
    LEGACY_MAGIC,
    NPY_MAGIC,
    SAFETENSORS,
    SAVE_HINT,
    TORCH_LEGACY,
    TORCH_ZIP,
    ZIP_MAGICS,
)
from runner.checkpoint.pickles import pickled_globals


@dataclass(frozen=True)
class FileKind:
    """``format`` is set when advrun loads the file; otherwise ``what`` it is and ``fix``."""

    format: str | None
    what: str
    fix: str = ""


def identify(path: Path) -> FileKind:
    """The kind of ``path`` (a file or a folder), by its content. Raises OSError if unreadable."""
    if path.is_dir():
        return _folder(path)
    with open(path, "rb") as fh:
        head = fh.read(512)
    size = path.stat().st_size
    if head.startswith(ZIP_MAGICS):
        return _zip(path)
    if head.startswith(LEGACY_MAGIC):
        return FileKind(TORCH_LEGACY, FORMAT_NAMES[TORCH_LEGACY])
    if _is_safetensors(head, size):
        return FileKind(SAFETENSORS, FORMAT_NAMES[SAFETENSORS])
    for test, kind in _OTHERS:
        if test(head, path):
            return kind(path)
    shown = head[:16]
    return FileKind(
        None,
        f"not a PyTorch checkpoint, nor another format advrun knows (it begins with {shown!r})"
        if head
        else "an empty file",
        SAVE_HINT,
    )


def _is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length, then that much JSON starting with '{'."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + n <= size


def _zip(path: Path) -> FileKind:
    """A zip archive: a torch checkpoint, a TorchScript archive, a numpy .npz, a Keras v3 file,
    another zip, or one cut short."""
    if not zipfile.is_zipfile(path):
        return FileKind(
            None,
            "a truncated zip archive: not a PyTorch checkpoint as it stands (it starts like a "
            "zip, but its end, the central directory, is missing: an interrupted download or "
            "copy)",
            "download or copy it again and compare its SHA-256 with the publisher's",
        )
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return FileKind(None, f"a damaged zip archive ({e})", "download or copy it again")
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        return FileKind(
            None,
            "a TorchScript archive (torch.jit.save), not a state_dict",
            f'save its weights: python -c "import torch; torch.save(torch.jit.load('
            f"{str(path)!r}).state_dict(), 'state_dict.pt')\" (torch.jit.load runs no pickled "
            "Python code)",
        )
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return FileKind(TORCH_ZIP, FORMAT_NAMES[TORCH_ZIP])
    if names and all(n.endswith(".npy") for n in names):
        return FileKind(
            None,
            "a numpy .npz archive of arrays, not a torch checkpoint",
            f'if it maps weight names to arrays: python -c "import numpy as np, torch; '
            f"d = np.load({str(path)!r}); torch.save({{k: torch.from_numpy(d[k]) for k in "
            "d.files}, 'model.pt')\"",
        )
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        return _keras(path)
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return FileKind(
        None,
        f"a zip archive that is not a torch checkpoint (it holds {shown or 'nothing'})",
        "if it packs a checkpoint, unzip it and pass the file inside",
    )


def _keras(path: Path) -> FileKind:
    return FileKind(
        None,
        "a Keras/HDF5 file (TensorFlow weights), not a PyTorch checkpoint",
        f"convert it to ONNX (python -m tf2onnx.convert --keras {path} --output model.onnx), "
        "then audit that through a model factory that calls onnx2torch.convert "
        "(docs: Auditing a published model)",
    )


def _onnx(path: Path) -> FileKind:
    return FileKind(
        None,
        "an ONNX model (a graph with its weights), not a PyTorch state_dict",
        "audit it through a model factory, e.g. zoo.py: def model(input_shape, num_classes): "
        f"import onnx2torch; return onnx2torch.convert({str(path)!r}) with arch 'zoo:model' and "
        "--allow-import zoo",
    )


def _looks_onnx(head: bytes, path: Path) -> bool:
    """ModelProto: field 1 (ir_version, a small varint), then producer_name (field 2), graph
    (7) or opset_import (8); or simply the .onnx extension."""
    if path.suffix.lower() == ".onnx":
        return True
    return len(head) > 3 and head[0] == 0x08 and 0 < head[1] < 32 and head[2] in (0x12, 0x3A, 0x42)


def _pickle(path: Path) -> FileKind:
    names = list(dict.fromkeys(pickled_globals(path, None)[0]))
    held = f"; it names {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}" if names else ""
    return FileKind(
        None,
        "not a PyTorch checkpoint: a plain Python pickle (torch.save writes a zip archive, or "
        "before torch 1.6 a pickle that starts with torch's magic number); refused unread, "
        f"nothing in it was run{held}",
        'if you trust it and it holds a state_dict: python -c "import pickle, torch; '
        f"torch.save(pickle.load(open({str(path)!r}, 'rb')), 'model.pt')\"",
    )


def _folder(path: Path) -> FileKind:
    inside = sorted(p.name for p in path.iterdir())[:50]
    weights = [n for n in inside if n.endswith((".safetensors", ".pt", ".pth", ".bin", ".ckpt"))]
    if "saved_model.pb" in inside:
        return FileKind(None, "a TensorFlow SavedModel folder, not a PyTorch checkpoint",
                        "convert it: python -m tf2onnx.convert --saved-model "
                        f"{path} --output model.onnx, then see the ONNX route")  # fmt: skip
    hint = f"pass the weights file inside it, e.g. {path / weights[0]}" if weights else SAVE_HINT
    return FileKind(None, "a folder, not a checkpoint file", hint)


def _npy(path: Path) -> FileKind:
    return FileKind(
        None,
        "a single numpy array (.npy), not a mapping of weight names to tensors",
        SAVE_HINT,
    )


def _gzip(path: Path) -> FileKind:
    return FileKind(None, "a gzip-compressed file", f"decompress it first: gunzip -k {path}")


def _tar(path: Path) -> FileKind:
    return FileKind(
        None,
        "a tar archive (torch's pre-0.4 checkpoint format, or a packed folder)",
        f"list it with tar -tf {path}; re-save an old checkpoint as a state_dict with a torch "
        "that reads it",
    )


_OTHERS = (
    (lambda h, p: h.startswith(HDF5_MAGIC), _keras),
    (lambda h, p: h.startswith(NPY_MAGIC), _npy),
    (lambda h, p: len(h) > 1 and h[0] == 0x80 and 2 <= h[1] <= 5, _pickle),
    (lambda h, p: h.startswith(b"\x1f\x8b"), _gzip),
    (lambda h, p: h[257:262] == b"ustar", _tar),
    (_looks_onnx, _onnx),
)
