"""Shared fixtures and markers."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests where CUDA is absent (torch imported only when such a test exists)."""
    gpu_items = [i for i in items if "gpu" in i.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; run on a GPU machine")
    for item in gpu_items:
        item.add_marker(skip)
