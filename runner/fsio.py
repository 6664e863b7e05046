"""Atomic writes and contained paths: a kill never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(AdvrunError):
    """A file could not be written (disk full, read-only, permissions): the environment, not a
    bug. What was written before stays intact (every write is atomic); rerunning resumes."""


_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
LOW_SPACE = 1 << 20  # a library error with less than this free is taken for a full disk


def write_error(path: str | Path, exc: BaseException, free: int | None = None) -> WriteError:
    """A one-line message for a failed write of ``path`` that says what to do."""
    code = getattr(exc, "errno", None)
    if code in _FULL or free is not None:
        why = "no space left on the device" + (
            f" ({free:,} bytes free)" if free is not None else ""
        )
        fix = (
            "free some space (or choose another -o), then rerun: finished epochs and runs are kept"
        )
    elif code in _DENIED:
        why = getattr(exc, "strerror", None) or str(exc)
        fix = "check the permissions of the output directory or choose another -o"
    else:
        why = getattr(exc, "strerror", None) or " ".join(str(exc).split())[:200]
        fix = "check the output directory, then rerun: finished epochs and runs are kept"
    return WriteError(f"cannot write {path}: {why}; {fix}")


def _free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _commit(tmp: str, path: Path) -> None:
    """Flush the temporary file to disk, then rename it over ``path`` (tests patch this to
    simulate a disk that fills mid-write)."""
    with open(tmp, "rb+") as f:  # flush before the rename makes it visible
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A failed write (disk full, permissions) leaves the old ``path`` untouched, removes the
    temporary file and raises :class:`WriteError` (exit 2, one line) instead of a traceback.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any other
    except OSError as e:
        raise write_error(path, e) from e
    try:
        try:
            yield Path(tmp)
            _commit(tmp, path)
        except OSError as e:
            raise write_error(path, e) from e
        except (RuntimeError, ValueError) as e:
            # libraries report a full disk their own way (torch.save: "unexpected pos ..."):
            # with (almost) no space left, say so; anything else is not ours to rename
            free = _free_bytes(path.parent)
            if free is not None and free < LOW_SPACE:
                raise write_error(path, e, free) from e
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_with(path: str | Path, writer: Callable[[Path], Any]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise AdvrunError(f"{path}: unreadable ({e}); delete it to recompute") from None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def contained(root: str | Path, *parts: str) -> Path:
    """``root/parts`` resolved, refusing anything that escapes ``root`` (user names are untrusted)."""
    root = Path(root).resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise AdvrunError(f"path {'/'.join(parts)!r} escapes the output directory {root}")
    return path
