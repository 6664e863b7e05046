"""Fault injection for the kill-at-any-point tests: ``ADVRUN_FAULT`` names where to die.

``ADVRUN_FAULT=point[@marker]`` (comma-separated for several) makes the process SIGKILL itself
when execution reaches ``point``; with ``@marker`` (a file path) only if the marker does not
exist yet, and the marker is created first, so a retried task or a rerun gets past the point. The
points are named where the code calls :func:`reached`, e.g. ``epoch:2`` (after epoch 2 is saved),
``run_done`` (between runs), ``attack:NAME`` (after that attack ran, before it is saved),
``curves``, ``checklist``, ``results`` and ``report`` (midway through writing those files).
Nothing happens when the variable is unset, which is always the case outside the tests.
"""

from __future__ import annotations

import os
import signal


def reached(point: str) -> None:
    spec = os.environ.get("ADVRUN_FAULT")
    if not spec:
        return
    for item in spec.split(","):
        name, _, marker = item.strip().partition("@")
        if name != point:
            continue
        if marker:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue  # fired once already
            os.close(fd)
        log = os.environ.get("ADVRUN_FAULT_LOG")
        if log:  # lets a test see which point fired
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{point}\n")
        os.kill(os.getpid(), signal.SIGKILL)
