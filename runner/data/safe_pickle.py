"""A restricted unpickler for data files that are pickles by format (the CIFAR python version).

``pickle.load`` on a user file runs whatever callable the file names; this unpickler resolves
only the globals that a pickled NumPy array needs and refuses every other one before it is
imported or called, so a file that names ``os.system`` (or anything else) is rejected with an
error naming the file, and nothing from it runs. Dicts, lists, tuples, strings, bytes and
numbers need no globals at all; persistent ids are refused too.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError

# (module, name) pairs a pickled ndarray references: the reconstructor (numpy 1.x wrote
# numpy.core, numpy 2.x writes numpy._core), the array type and its dtype.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside :data:`ALLOWED_GLOBALS`."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class DataUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise RefusedGlobal(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a data file")


def load_data_pickle(path: Path, expected: str) -> Any:
    """Unpickle ``path`` (Python 2 strings come back as bytes, as the CIFAR page instructs).

    ``expected`` says what the file should hold, for the error messages.
    """
    try:
        with open(path, "rb") as f:
            return DataUnpickler(f, encoding="bytes").load()
    except RefusedGlobal as e:
        raise AdvrunError(
            f"refused to unpickle {path}: it references {e.module}.{e.name}, but {expected} "
            "holds only dicts, lists, strings, bytes and NumPy arrays; nothing from the file was "
            "run. Use the original files from the data set's page (a copy re-saved by other "
            "code, or a tampered one, is not accepted)"
        ) from None
    except OSError as e:
        raise AdvrunError(f"cannot read {path} ({e})") from None
    except Exception as e:  # truncated or not a pickle: EOFError, UnpicklingError, ValueError...
        raise AdvrunError(
            f"{path} is not a readable pickle ({type(e).__name__}: {str(e)[:120]}); expected "
            f"{expected}; the file is truncated or corrupt"
        ) from None
