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


def seed_everything(seed: int) -> None:
    """Seed every generator a run touches; deterministic kernels where torch has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
