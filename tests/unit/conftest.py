"""Helpers for spec tests: write a spec and collect its errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from spec_base import BASE

from runner.errors import SpecError
from runner.spec import load_spec


@pytest.fixture
def write_spec(tmp_path: Path):
    def write(text: str = BASE, name: str = "spec.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p

    return write


@pytest.fixture
def errors_of(write_spec):
    """The SpecError problems of a spec text (fails the test if the spec is valid)."""

    def errors(text: str, overrides=()):
        path = write_spec(text)
        with pytest.raises(SpecError) as ei:
            load_spec(path, list(overrides))
        return ei.value.problems

    return errors
