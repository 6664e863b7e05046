"""Integration-test fixtures shared by every module in this folder."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _threads_for_tests():
    """The tests' intra-op threads (exec_helpers.threads_for_tests: one unless ADVRUN_TEST_THREADS or
    OMP_NUM_THREADS asks for more): the tiny digits models gain nothing from more, and on busy
    shared cores two threads wait on each other (measured up to 10x slower)."""
    from exec_helpers import threads_for_tests

    before = torch.get_num_threads()
    torch.set_num_threads(threads_for_tests())
    yield
    torch.set_num_threads(before)
