"""Integration-test fixtures shared by every module in this folder."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: the tiny digits models gain nothing from more, and on busy shared
    cores two threads wait on each other (measured up to 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
