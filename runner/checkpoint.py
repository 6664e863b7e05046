"""Loading checkpoints safely: ``torch.load(weights_only=True)`` and a one-line error for each
way a file can be wrong (missing, truncated, not a checkpoint, pickled code, wrong model).

Used for user files (``advrun eval --checkpoint``) and for a run's own checkpoints on resume and
evaluation. Nothing in a checkpoint is ever executed: ``weights_only=True`` unpickles tensors,
containers and numbers only, and refuses any other object before constructing it.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError

__all__ = ["load_into", "load_state_dict", "safe_load"]

_SAVE = "save it with torch.save(model.state_dict(), PATH)"


def safe_load(path: Path, device: Any, what: str = "checkpoint", fix: str = _SAVE) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure as an :class:`AdvrunError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise AdvrunError(f"{what} {path}: no such file; {fix}")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        raise AdvrunError(f"{what} {path}: cannot read it ({e.strerror or e})") from None
    if not is_zip:  # torch.save has written zip archives since torch 1.6; a cut-off one is not
        raise AdvrunError(
            f"{what} {path}: not a PyTorch checkpoint (torch.save writes a zip archive; this file "
            f"is truncated or in another format); {fix}"
        )
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AdvrunError(
            f"{what} {path}: refused to load: it holds pickled Python objects, not just tensors "
            f"({first[:200]}); nothing in it was run; {fix}"
        ) from None
    except Exception as e:  # zip/EOF/format errors vary by torch version
        detail = " ".join(str(e).split())[:200]
        raise AdvrunError(
            f"{what} {path}: not a PyTorch checkpoint, or a damaged one ({type(e).__name__}: "
            f"{detail}); {fix}"
        ) from None


def load_state_dict(path: Path, device: Any) -> dict[str, Any]:
    """A plain state_dict (a mapping of names to tensors) from a user's file."""
    import torch

    obj = safe_load(path, device)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a common wrapper
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise AdvrunError(
            f"checkpoint {path}: expected a state_dict (a mapping of names to tensors), got "
            f"{_kind(obj)}; {_SAVE}"
        )
    return obj


def _shown(key: Any) -> str:
    """A name from a checkpoint, safe to print (it is untrusted text)."""
    text = str(key)
    return text if text.isprintable() and len(text) <= 80 else ascii(text[:80])


def _kind(obj: Any) -> str:
    if isinstance(obj, dict):
        return "an empty mapping" if not obj else "a mapping that holds more than tensors"
    return type(obj).__name__


def load_into(model: Any, state: Any, path: Path, name: str, fix: str) -> None:
    """``model.load_state_dict(state)``, naming missing, unexpected and mis-shaped entries
    (``name`` says which model, e.g. "model 'cnn'")."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AdvrunError(f"checkpoint {path} is not a state_dict for {name}; {fix}")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [_shown(k) for k in state if k not in own]
    wrong = [
        f"{_shown(k)} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(
                "wrong shapes: " + "; ".join(wrong[:3]) + (" ..." if len(wrong) > 3 else "")
            )
        if missing:
            parts.append(
                "missing: " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            )
        if unexpected:
            parts.append(
                "unexpected: " + ", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
            )
        raise AdvrunError(f"checkpoint {path} does not fit {name} ({'; '.join(parts)}); {fix}")
    model.load_state_dict(state)
