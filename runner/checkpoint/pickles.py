"""The pickle inside a checkpoint, read as opcodes (``pickletools.genops``), never executed.

Used for two things: saying what a refused file holds (a full pickled ``nn.Module`` is the common
case: ``torch.save(model)`` instead of ``torch.save(model.state_dict())``), and the few harmless
classes a published checkpoint keeps beside its weights (``argparse.Namespace`` of the training
arguments, numpy scalars such as ``best_acc``), which :data:`METADATA_GLOBALS` lets
``weights_only=True`` rebuild as plain values: a class, not a function, rebuilt from its
``__dict__``, whose construction runs no code of the file.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path
from typing import IO, Any

from runner.checkpoint.formats import TORCH_LEGACY, TORCH_ZIP

_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
            "BINSTRING", "STRING"}  # fmt: skip
# what torch.save itself pickles beside the tensors: not the user's objects
_TORCH_OWN = ("torch.", "collections.", "builtins.", "__builtin__.", "copyreg.", "_codecs.")


def metadata_globals() -> list[Any]:
    """Classes a checkpoint may hold beside its weights, allowed to ``weights_only`` loads."""
    import argparse

    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    # numpy 1 pickles its scalars as numpy.core.multiarray.scalar, numpy 2 as numpy._core...
    return [argparse.Namespace, np.dtype, scalar, (scalar, "numpy.core.multiarray.scalar"),
            *dtypes]  # fmt: skip


def _scan(fh: IO[bytes]) -> tuple[list[str], set[str]]:
    """The globals one pickle names (module.name) and the strings it holds, up to its STOP."""
    names: list[str] = []
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(fh):
        if op.name in ("GLOBAL", "INST"):
            names.append(str(arg).replace(" ", "."))
        elif op.name in _STRINGS:
            strings.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
    return names, set(strings)


def pickled_globals(path: Path, fmt: str | None) -> tuple[list[str], set[str]]:
    """The globals and strings of the object pickle of ``path`` ([] when it cannot be read)."""
    try:
        if fmt == TORCH_ZIP:
            with zipfile.ZipFile(path) as z:
                member = next(n for n in z.namelist() if n.endswith("data.pkl"))
                with z.open(member) as fh:
                    return _scan(fh)
        with open(path, "rb") as fh:
            if fmt == TORCH_LEGACY:  # magic number, protocol version, system info, then the object
                for _ in range(3):
                    _scan(fh)
            return _scan(fh)
    except (ValueError, OSError, StopIteration, zipfile.BadZipFile, EOFError):
        return [], set()


def describe_refused(path: Path, fmt: str | None) -> tuple[str, str | None]:
    """What a pickle ``weights_only`` refused holds, and (for a pickled module) its class."""
    names, strings = pickled_globals(path, fmt)
    foreign = [n for n in dict.fromkeys(names) if not n.startswith(_TORCH_OWN)]
    modules = [n for n in names if n.startswith("torch.nn.modules.")]
    if modules or {"_modules", "_parameters"} <= strings:
        cls = (foreign or modules or ["an unknown class"])[0]
        return f"a full pickled nn.Module ({cls}), not a state_dict", cls
    if foreign:
        shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
        return f"pickled Python objects, not just tensors (it names {shown})", None
    return "pickled Python objects, not just tensors", None
