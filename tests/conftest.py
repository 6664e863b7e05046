"""Shared fixtures and markers."""

from __future__ import annotations

from pathlib import Path

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


EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


@pytest.fixture
def example_plugins(monkeypatch):
    """The docs' example attack and recipe (docs/examples/), each one file, registered at run
    time with one line each, as the docs show; unregistered afterwards."""
    from runner.catalog import ATTACKS, RECIPES

    monkeypatch.syspath_prepend(str(EXAMPLES))
    ATTACKS.register("momentum_pgd", "my_attack:MomentumPGD", "momentum PGD (Dong et al. 2018)")
    RECIPES.register("curriculum_pgd", "my_recipe:CurriculumPGDTraining", "curriculum PGD")
    try:
        yield
    finally:
        ATTACKS.unregister("momentum_pgd")
        RECIPES.unregister("curriculum_pgd")
