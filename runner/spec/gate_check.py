"""Cross-field checks of the ``gate:`` block (pure): names it refers to exist in the spec, each
rule sets a threshold. Kept apart from :mod:`runner.spec.gate` (the block's model), which the root
spec imports, so that this check may name the root spec without an import cycle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runner.registry import did_you_mean
from runner.spec.gate import WORST_CASE, Problem

if TYPE_CHECKING:
    from runner.spec.core import Spec


def _names(where: tuple[Any, ...], given: list[str] | None, known: list[str], what: str):
    for j, name in enumerate(given or []):
        if name not in known:
            yield (
                (*where, j),
                f"unknown {what} '{name}'{did_you_mean(name, known)}; the spec's {what}s: "
                + ", ".join(known),
            )


def check(spec: Spec) -> Iterator[Problem]:
    """Names in the gate must exist in the spec; each rule must set at least one threshold."""
    gate = getattr(spec, "gate", None)
    if gate is None:
        return
    models = [m.name for m in spec.models]
    recipes = [r.name for r in spec.recipes]
    attacks = [a.name for a in spec.attacks]
    allowed = ["clean", *attacks, *([WORST_CASE] if attacks else [])]
    if not gate.rules and gate.baseline is None:
        yield (
            ("gate",),
            "the gate has neither rules nor a baseline; give rules: [...] or baseline: DIR",
        )
    given = gate.max_drop if "max_drop" in gate.model_fields_set else {}  # defaults fit any suite
    for name, value in given.items():
        if name not in allowed:
            yield (
                ("gate", "max_drop", name),
                f"'{name}' is not an attack of the suite{did_you_mean(name, allowed)}; "
                f"choose one of: {', '.join(allowed)}",
            )
        elif not 0 <= value <= 1:
            yield (
                ("gate", "max_drop", name),
                f"allowed drop {value:g} must be a fraction in [0, 1] (e.g. 0.02 for 2 points)",
            )
    for i, rule in enumerate(gate.rules):
        where = ("gate", "rules", i)
        yield from _names((*where, "models"), rule.models, models, "model")
        yield from _names((*where, "recipes"), rule.recipes, recipes, "recipe")
        for name, value in rule.min_accuracy.items():
            if name not in allowed:
                yield (
                    (*where, "min_accuracy", name),
                    f"'{name}' is not an attack of the suite{did_you_mean(name, allowed)}; "
                    f"choose one of: {', '.join(allowed)}",
                )
            elif not 0 <= value <= 1:
                yield (
                    (*where, "min_accuracy", name),
                    f"minimum accuracy {value:g} must be a fraction in [0, 1] (e.g. 0.7 for 70%)",
                )
        if rule.max_attack_success_rate is not None and getattr(spec, "poisoning", None) is None:
            yield (
                (*where, "max_attack_success_rate"),
                "the spec has no poisoning block, so no attack success rate is measured; "
                "add poisoning: or remove this threshold",
            )
        if (
            rule.min_clean_accuracy is None
            and not rule.min_accuracy
            and rule.max_attack_success_rate is None
            and rule.checklist == "ignore"
        ):
            yield (
                where,
                "this rule sets no threshold; give min_clean_accuracy, min_accuracy, "
                "max_attack_success_rate or checklist",
            )
