"""Evaluation attacks: the options every attack shares, and the checks across the suite.

Each kind's spec model subclasses :class:`AttackBase` in its plug-in file
(``runner/attacks/<kind>.py``, see :mod:`runner.attacks.base`). Cross-field checks (engine and
norm supported by the kind, an L2 budget for L2-only attacks under an Linf threat, each kind's
own checks, curve settings) are in :func:`check_attacks`, yielding (key path, message) pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from runner import expr
from runner.catalog import ATTACKS
from runner.spec.base import MAX_BATCH, Expr, StrictModel

Engine = Literal["art", "native"]


class AttackBase(StrictModel):
    """Options every attack shares."""

    name: str = Field(
        ..., min_length=1, max_length=80, description="your name for this attack; a results column"
    )
    eps: Expr | None = Field(
        None, description="perturbation budget in pixel units (default: the threat eps)"
    )
    norm: Literal["linf", "l2"] | None = Field(
        None, description="distance (default: the threat norm)"
    )
    engine: Engine = Field(
        "art", description="art: ART's implementation (reference); native: advrun's on-device loop"
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=MAX_BATCH,
        description=f"attack batch size, 1 to {MAX_BATCH} (default: eval.batch_size)",
    )


ATTACK_SPECS = ATTACKS.configs()
"""Spec models of the registered attack kinds by kind, loaded on access (each kind's model lives
in its plug-in file, ``runner/attacks/<kind>.py``, named by the catalog)."""

Problem = tuple[tuple[Any, ...], str]


def check_attacks(spec: Any) -> Iterator[Problem]:
    """Engine/norm support, budgets in the right norm, each kind's own checks (its plug-in's
    ``check``), and the eval curve settings."""
    threat_eps = expr.evaluate(spec.threat.eps)
    for i, attack in enumerate(spec.attacks):
        yield from _check_attack(spec, attack, ("attacks", i), threat_eps)
    yield from _check_curve(spec)


def _check_attack(
    spec: Any, attack: Any, where: tuple[Any, ...], threat_eps: float
) -> Iterator[Problem]:
    """One attack: its engine and norm, its budget's units, then its plug-in's own checks."""
    threat = spec.threat
    plugin = ATTACKS.load(attack.kind)
    norms = plugin.norms
    if attack.engine not in norms:
        yield (
            (*where, "engine"),
            f"attack kind '{attack.kind}' has no {attack.engine} engine; use engine: "
            + " or ".join(norms),
        )
        return
    norm = attack.norm or threat.norm
    if norm not in norms[attack.engine]:
        other = [e for e, ns in norms.items() if norm in ns]
        hint = f"; use engine: {other[0]}" if other else ""
        yield (
            (*where, "norm"),
            f"attack kind '{attack.kind}' with engine {attack.engine} supports norm "
            f"{', '.join(norms[attack.engine])}, not {norm}{hint}",
        )
    if norm != threat.norm and attack.eps is None:
        yield (
            (*where, "eps"),
            f"attack '{attack.name}' measures {norm} but the threat model is {threat.norm}: "
            f"give its eps in {norm} units (it is reported beside, not in, the worst case)",
        )
    eps = threat_eps if attack.eps is None else expr.evaluate(attack.eps, threat_eps)
    yield from plugin.check(attack, where, spec, eps)


def _check_curve(spec: Any) -> Iterator[Problem]:
    """eval.curve_attacks name attacks of the suite; eval.eps_curve's values fit the pixel
    range, and some attack can draw the curve."""
    threat, ev = spec.threat, spec.eval
    names = [a.name for a in spec.attacks]
    if ev.curve_attacks is not None:
        for j, n in enumerate(ev.curve_attacks):
            if n not in names:
                from runner.registry import did_you_mean

                yield (
                    ("eval", "curve_attacks", j),
                    f"no attack named '{n}'{did_you_mean(n, names)}; "
                    f"attacks: {', '.join(names) or '(none)'}",
                )
    if ev.eps_curve is None:
        return
    lo, hi = threat.pixel_range
    for j, e in enumerate(ev.eps_curve):
        try:
            v = expr.evaluate(e, expr.evaluate(threat.eps))
        except ValueError as err:
            yield ("eval", "eps_curve", j), str(err)
            continue
        if v < 0 or (threat.norm == "linf" and v > hi - lo):
            yield (
                ("eval", "eps_curve", j),
                f"eps {v:g} must be in [0, {hi - lo:g}] (the pixel range width)",
            )
    if ev.curve_attacks is None and not any(
        ATTACKS.load(a.kind).curve and (a.norm or threat.norm) == threat.norm for a in spec.attacks
    ):
        yield (
            ("eval", "eps_curve"),
            "no attack to draw the curve with: add a pgd or apgd attack at the threat norm, "
            "or name attacks in eval.curve_attacks",
        )


def uses_eot(attack: Any) -> bool:
    """Whether an attack (a spec model or its dump) averages its gradient over random draws:
    ``eot_iter`` > 1, or the original AutoAttack's rand composition (APGD with 20 EoT draws)."""
    get = attack.get if isinstance(attack, dict) else lambda k, d=None: getattr(attack, k, d)
    return (get("eot_iter", 1) or 1) > 1 or get("composition") == "rand"
