"""Registered attacks (pure; imports no torch)."""

from __future__ import annotations

from runner.registry import Registry

ATTACKS = Registry("attack kind")
ATTACKS.register(
    "fgsm",
    "runner.attacks.art_attacks:fgsm",
    "fast gradient sign method (Goodfellow 2015)",
    native=True,
)
ATTACKS.register(
    "pgd", "runner.attacks.art_attacks:pgd", "projected gradient descent (Madry 2018)", native=True
)
