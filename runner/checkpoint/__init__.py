"""Loading checkpoints safely, in every common way a state_dict travels, and a one-line error that
says what a refused file is and how to convert it.

Formats read (:mod:`runner.checkpoint.sniff` tells them apart by content, never by extension):
torch's zip archive (``torch.save`` since 1.6) and its legacy serialization (before 1.6) through
``torch.load(weights_only=True)``, which unpickles tensors, containers and numbers only and refuses
any other object before constructing it; and ``.safetensors`` files (no pickle at all). Tensors
saved on a CUDA device are mapped to the run's device, so a CPU-only machine reads them.
Wrappers, EMA weights and ``module.`` prefixes are undone by :mod:`runner.checkpoint.unwrap`.

Used for user files (``advrun eval --checkpoint``: :func:`load_checkpoint`) and for a run's own
checkpoints on resume and evaluation (:func:`safe_load`).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.checkpoint.formats import FORMAT_NAMES, SAFETENSORS
from runner.checkpoint.sniff import identify
from runner.checkpoint.unwrap import unwrap
from runner.errors import AdvrunError

__all__ = ["LoadedCheckpoint", "load_checkpoint", "load_into", "load_state_dict", "safe_load"]

_SAVE = "save it with torch.save(model.state_dict(), PATH)"


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A user's checkpoint as loaded: its state_dict and what was found and done to get it."""

    state: dict[str, Any]
    path: str
    sha256: str
    size_bytes: int
    format: str  # torch-zip | torch-legacy | safetensors
    found: str  # the file's top-level object, in words
    unwrapped: tuple[str, ...]  # the steps from that object to the state_dict
    weights: str | None  # raw | ema, when the file kept them apart
    ignored: tuple[str, ...]  # keys beside the weights (optimizer, epoch, ...)
    saved_on: tuple[str, ...]  # the storage locations written in the file (cpu, cuda:0)
    loaded_on: str
    tensors: int = 0
    parameters: int = 0  # values (numel) in the state_dict

    @property
    def format_name(self) -> str:
        return FORMAT_NAMES.get(self.format, self.format)

    def lines(self, device: str | None = None) -> list[str]:
        """What was found and unwrapped, for the run log (``device``: where it runs)."""
        device = device or self.loaded_on
        moved = [s for s in self.saved_on if s != device]
        out = [
            f"checkpoint {self.path}: {self.format_name}, {self.size_bytes:,} bytes, "
            f"sha256 {self.sha256}",
            f"  found {self.found}"
            + (f"; kept aside: {', '.join(self.ignored)}" if self.ignored else ""),  # fmt: skip
        ]
        out += [f"  {step}" for step in self.unwrapped]
        if moved:
            out.append(f"  tensors saved on {', '.join(moved)} mapped to {device}")
        out.append(f"  {self.tensors} tensors, {self.parameters:,} values")
        return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _kind(path: Path, what: str, fix: str, convert: bool = True):
    """The file's kind; an AdvrunError for a missing, unreadable or unsupported file, saying
    how to convert it (``convert``) or else ``fix`` (a run's own file: retrain it)."""
    if not path.exists():
        raise AdvrunError(f"{what} {path}: no such file; {fix}")
    try:
        kind = identify(path)
    except OSError as e:
        raise AdvrunError(f"{what} {path}: cannot read it ({e.strerror or e})") from None
    if kind.format is None:
        raise AdvrunError(f"{what} {path}: {kind.what}; {(convert and kind.fix) or fix}")
    return kind


_AGAIN = "download or copy it again and compare its SHA-256 with the publisher's"
_SHORT = {"torch-zip": "torch zip", "torch-legacy": "torch legacy (pre-1.6)"}


def _torch_load(
    path: Path, fmt: str, device: Any, what: str, fix: str, damaged_fix: str | None = None
) -> tuple[Any, set[str]]:
    """``torch.load(weights_only=True)`` mapped to ``device``, and the locations in the file
    (``damaged_fix``: what to do about a damaged file, if not ``fix``)."""
    import torch
    from torch.serialization import default_restore_location

    from runner.checkpoint.pickles import describe_refused, metadata_globals

    seen: set[str] = set()

    def restore(storage: Any, location: str) -> Any:
        seen.add(str(location))
        return default_restore_location(storage, str(device))

    try:
        with torch.serialization.safe_globals(metadata_globals()):
            return torch.load(path, map_location=restore, weights_only=True), seen
    except pickle.UnpicklingError:
        held, cls = describe_refused(path, fmt)
        if cls is not None:
            fix = (f"if you trust the file, save its weights where {cls} can be imported: python -c "
                   f"\"import torch; m = torch.load({str(path)!r}, weights_only=False); "
                   "torch.save(m.state_dict(), 'state_dict.pt')\" (weights_only=False runs the "
                   "file's pickled code)")  # fmt: skip
        raise AdvrunError(
            f"{what} {path}: refused to load: it holds {held}; nothing in it was run; {fix}"
        ) from None
    except Exception as e:  # zip/EOF/format errors vary by torch version
        detail = " ".join(str(e).split())[:200]
        raise AdvrunError(
            f"{what} {path}: a damaged {_SHORT[fmt]} checkpoint, not a PyTorch checkpoint as it "
            f"stands ({type(e).__name__}: {detail}); {damaged_fix or fix}"
        ) from None


def safe_load(path: Path, device: Any, what: str = "checkpoint", fix: str = _SAVE) -> Any:
    """What a torch checkpoint file holds (``weights_only=True``), every failure an
    :class:`AdvrunError` (used for a run's own checkpoints: no safetensors, no unwrapping)."""
    path = Path(path)
    kind = _kind(path, what, fix, convert=False)
    if kind.format == SAFETENSORS:
        return _safetensors(path, device, what, fix)
    return _torch_load(path, kind.format, device, what, fix)[0]


def _safetensors(path: Path, device: Any, what: str, fix: str) -> dict[str, Any]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as e:  # a dependency of advrun; missing only in a broken install
        raise AdvrunError(
            f"{what} {path}: a safetensors file, but the safetensors package does not import "
            f"({e}); pip install safetensors"
        ) from None
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        detail = " ".join(str(e).split())[:200]
        raise AdvrunError(f"{what} {path}: a damaged safetensors file ({detail}); {fix}") from None


def load_checkpoint(
    path: Path, device: Any = "cpu", weights: str | None = None, what: str = "checkpoint"
) -> LoadedCheckpoint:
    """A user's checkpoint as a plain state_dict on ``device``: any supported format, wrappers
    and prefixes undone (``weights``: raw | ema when the file keeps both), with its provenance."""
    path = Path(path)
    kind = _kind(path, what, _SAVE)
    if kind.format == SAFETENSORS:
        obj, seen = _safetensors(path, device, what, _AGAIN), set()  # no device in the format
    else:
        obj, seen = _torch_load(path, kind.format, device, what, _SAVE, _AGAIN)
    got = unwrap(obj, weights, f"{what} {path}")
    return LoadedCheckpoint(
        state=got.state,
        path=str(path),
        sha256=_sha256(path),
        size_bytes=path.stat().st_size,
        format=kind.format,
        found=got.found,
        unwrapped=got.steps,
        weights=got.weights,
        ignored=got.ignored,
        saved_on=tuple(sorted(seen)),
        loaded_on=str(device),
        tensors=len(got.state),
        parameters=sum(int(v.numel()) for v in got.state.values()),
    )


def load_state_dict(path: Path, device: Any) -> dict[str, Any]:
    """A plain state_dict (a mapping of names to tensors) from a user's file."""
    return load_checkpoint(path, device).state


def _shown(key: Any) -> str:
    """A name from a checkpoint, safe to print (it is untrusted text)."""
    text = str(key)
    return text if text.isprintable() and len(text) <= 80 else ascii(text[:80])


def load_into(model: Any, state: Any, path: Path, name: str, fix: str) -> None:
    """``model.load_state_dict(state)``, naming missing, unexpected and mis-shaped entries
    (``name`` says which model, e.g. "model 'cnn'")."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AdvrunError(f"checkpoint {path} is not a state_dict for {name}; {fix}")
    problems = mismatch(model, state)
    if problems:
        raise AdvrunError(f"checkpoint {path} does not fit {name} ({problems}); {fix}")
    model.load_state_dict(state)


def mismatch(model: Any, state: dict[str, Any]) -> str | None:
    """Missing, unexpected and mis-shaped entries of ``state`` for ``model``, in words."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [_shown(k) for k in state if k not in own]
    wrong = [
        f"{_shown(k)} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, items, limit in (("wrong shapes", wrong, 3), ("missing", missing, 5),
                                ("unexpected", unexpected, 5)):  # fmt: skip
        if items:
            sep = "; " if label == "wrong shapes" else ", "
            parts.append(f"{label}: " + sep.join(items[:limit]) + (" ..." if len(items) > limit
                                                                  else ""))  # fmt: skip
    return "; ".join(parts) or None
