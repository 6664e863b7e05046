"""Typed, resolved spec objects for tests that call the evaluation API directly."""

from __future__ import annotations

from typing import Any

from runner.compile import Threat
from runner.spec.attacks import ATTACK_SPECS, AttackBase
from runner.spec.core import EvalSpec

LINF_01 = Threat("linf", 0.1, (0.0, 1.0))


def attack(kind: str, name: str | None = None, **kw: Any) -> AttackBase:
    """A resolved attack (eps, norm and batch size given), validated like a spec's."""
    fields = {"name": name or kind, "kind": kind, "batch_size": 512, **kw}
    return ATTACK_SPECS[kind].model_validate(fields)


def evaluation(**kw: Any) -> EvalSpec:
    return EvalSpec.model_validate(kw)
