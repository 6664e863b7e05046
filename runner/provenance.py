"""Versions, git commit and host facts recorded with every run (the audit trail)."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.cache
def _versions() -> dict[str, str | None]:
    return {
        "python": sys.version.split()[0],
        "advrun": _version("advrun"),
        "torch": _version("torch"),
        "adversarial-robustness-toolbox": _version("adversarial-robustness-toolbox"),
        "optuna": _version("optuna"),
        "numpy": _version("numpy"),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str | None]:
    """Versions recorded with every run (looked up once per process)."""
    return dict(_versions())
