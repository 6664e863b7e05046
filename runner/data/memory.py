"""How much memory a data set's arrays take, and a refusal before loading one that cannot fit.

A run holds the images as float32 several times over: the loaded data set, its train/val/test
split (fancy indexing copies), and the tensors made from it (plus the raw file while decoding).
Loading past the machine's available memory would swap for minutes or be killed by the OOM
killer without a word, so loaders call :func:`reserve` with the sizes they read from the file
headers before they allocate anything.
"""

from __future__ import annotations

import os

from runner.errors import AdvrunError

COPIES = 3  # float32 copies a run holds: data set, split, tensors


def available_bytes() -> int | None:
    """Memory available to a new allocation without swapping, or None where unknown.

    Linux: MemAvailable from /proc/meminfo (free + reclaimable cache); elsewhere the free
    physical pages from sysconf (an underestimate on macOS, which caches aggressively).
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the unit is kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def human(n: float) -> str:
    """Bytes as a short human string: 703.1 MiB, 1.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def describe(n_images: int, shape: tuple[int, int, int]) -> str:
    """'60,000 images of 3x32x32 take 703.1 MiB as float32'."""
    c, h, w = shape
    return f"{n_images:,} images of {c}x{h}x{w} take {human(n_images * c * h * w * 4)} as float32"


def reserve(
    name: str, n_images: int, shape: tuple[int, int, int], where: str, extra_bytes: int = 0
) -> int:
    """Refuse (AdvrunError) a data set whose arrays would not fit in available memory.

    ``extra_bytes``: what decoding holds on top (e.g. the raw uint8 file contents). Returns the
    float32 size of one copy of the images.
    """
    c, h, w = shape
    one = n_images * c * h * w * 4
    need = COPIES * one + extra_bytes
    have = available_bytes()
    if have is not None and need > have:
        raise AdvrunError(
            f"{name}: {describe(n_images, shape)} ({where}); a run holds about {COPIES} copies "
            f"plus decoding buffers, {human(need)} in all, but this machine has {human(have)} "
            "available; free memory or run on a machine with more (the whole file is decoded "
            "before data.limit applies)"
        )
    return one
