"""Device choice and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from runner.errors import AdvrunError


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit device that is missing is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AdvrunError(
                f"device '{name}' requested but CUDA is not available here; use device: auto or cpu"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise AdvrunError(
                f"device '{name}': only {torch.cuda.device_count()} CUDA device(s) here"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise AdvrunError(
            "device 'mps' requested but MPS is not available here; use device: auto or cpu"
        )
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed every generator a run touches; with ``deterministic``, torch's deterministic
    algorithms too (an operation without one then raises instead of varying silently)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True)
    else:  # the fast path: cuDNN may pick (and vary) its fastest kernels
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = torch.cuda.is_available()


def set_threads(threads: int | None, deterministic: bool) -> int:
    """torch's intra-op CPU threads for a run; returns the count used.

    CPU results depend on the thread count (reductions split differently), so a deterministic
    run without an explicit count uses one thread, whatever the machine or the number of jobs.
    """
    if threads is None and deterministic:
        threads = 1
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
