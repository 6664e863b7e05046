"""Evaluation attacks: one spec model per ``kind``, parameters in the user's pixel units.

Cross-field checks (engine and norm supported by the kind, an L2 budget for L2-only attacks under
an Linf threat, curve settings) are in :func:`check_attacks`, yielding (key path, message) pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, model_validator

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


class FGSMAttack(AttackBase):
    """Fast gradient sign method (Goodfellow et al. 2015); the L2 variant steps along the gradient."""

    kind: Literal["fgsm"] = Field(description="fast gradient (sign) method, one step of size eps")


class PGDAttack(AttackBase):
    """Projected gradient descent (Madry et al. 2018)."""

    kind: Literal["pgd"] = Field(description="projected gradient descent")
    steps: int = Field(20, ge=1, le=100000, description="iterations")
    step_size: Expr = Field("eps/4", description="step size; 'eps' here is this attack's eps")
    restarts: int = Field(
        1, ge=1, le=1000, description="random restarts; the worst case per example is kept"
    )
    random_start: bool = Field(True, description="start from a uniform random point in the ball")


class APGDAttack(AttackBase):
    """Auto-PGD (Croce & Hein 2020): PGD with an adaptive step size and momentum."""

    kind: Literal["apgd"] = Field(description="auto-PGD")
    engine: Engine = Field("native", description="native (default, fast) or art")
    loss: Literal["ce", "dlr"] = Field(
        "ce", description="ce: cross-entropy; dlr: difference of logits ratio (scale invariant)"
    )
    targeted: bool = Field(
        False, description="attack each of the n_targets most likely other classes in turn"
    )
    n_targets: int = Field(9, ge=1, le=1000, description="targeted: how many target classes")
    steps: int = Field(100, ge=1, le=100000, description="iterations per run")
    restarts: int = Field(1, ge=1, le=1000, description="random restarts (per target)")


class FABAttack(AttackBase):
    """Targeted fast adaptive boundary attack, FAB-T (Croce & Hein 2020); native only."""

    kind: Literal["fab"] = Field(description="FAB-T, minimal-norm; projected into the eps-ball")
    engine: Literal["native"] = Field("native", description="native only (ART has no FAB)")
    steps: int = Field(100, ge=1, le=100000, description="iterations per target")
    n_targets: int = Field(9, ge=1, le=1000, description="how many target classes")


class SquareAttack(AttackBase):
    """Square attack (Andriushchenko et al. 2020): black box, forward passes only."""

    kind: Literal["square"] = Field(description="black-box random-search attack")
    engine: Engine = Field("native", description="native (Linf only, fast) or art (Linf, L2)")
    queries: int = Field(5000, ge=1, le=1000000, description="query budget per example")
    p_init: float = Field(0.8, gt=0, le=1, description="initial fraction of pixels changed")
    restarts: int = Field(1, ge=1, le=100, description="restarts")


class CWL2Attack(AttackBase):
    """Carlini & Wagner L2 (2017) through ART; minimal norm, projected into the L2 eps-ball."""

    kind: Literal["cw_l2"] = Field(description="Carlini & Wagner L2")
    norm: Literal["l2"] = Field("l2", description="always l2")
    confidence: float = Field(0.0, ge=0, description="required logit margin of the adversarial")
    learning_rate: float = Field(0.01, gt=0, description="Adam step size")
    binary_search_steps: int = Field(10, ge=1, le=100, description="searches over the constant c")
    steps: int = Field(10, ge=1, le=100000, description="iterations per binary-search step")
    initial_const: float = Field(0.01, gt=0, description="initial trade-off constant c")


class CWLinfAttack(AttackBase):
    """Carlini & Wagner Linf (2017) through ART; minimal norm, projected into the eps-ball."""

    kind: Literal["cw_linf"] = Field(description="Carlini & Wagner Linf")
    norm: Literal["linf"] = Field("linf", description="always linf")
    confidence: float = Field(0.0, ge=0, description="required logit margin of the adversarial")
    learning_rate: float = Field(0.01, gt=0, description="step size")
    steps: int = Field(10, ge=1, le=100000, description="iterations per (tau, c) pair")
    initial_const: float = Field(1e-5, gt=0, description="first trade-off constant c")
    largest_const: float = Field(20.0, gt=0, description="c doubles up to this value")
    decrease_factor: float = Field(
        0.9, gt=0, lt=1, description="tau shrinks by this factor; ART loops per example: slow"
    )


class DeepFoolAttack(AttackBase):
    """DeepFool (Moosavi-Dezfooli et al. 2016) through ART; projected into the eps-ball."""

    kind: Literal["deepfool"] = Field(description="DeepFool, minimal L2 perturbation")
    steps: int = Field(100, ge=1, le=100000, description="iterations")
    overshoot: float = Field(0.02, ge=0, le=1, description="overshoot factor")
    n_grads: int = Field(10, ge=2, le=1000, description="class gradients per step (most likely)")


class AutoAttackSpec(AttackBase):
    """AutoAttack, in one of two clearly different compositions."""

    kind: Literal["autoattack"] = Field(description="AutoAttack")
    composition: Literal["standard", "art"] = Field(
        "standard",
        description="standard: Croce & Hein 2020 (APGD-CE, APGD-T, FAB-T, Square; native engine); "
        "art: ART's own AutoAttack defaults (APGD-CE, APGD-DLR, DeepFool, Square; engine art)",
    )
    engine: Engine = Field(
        "native", description="follows the composition (standard: native, art: art)"
    )

    @model_validator(mode="before")
    @classmethod
    def _engine_follows_composition(cls, data: Any) -> Any:
        if isinstance(data, dict) and "engine" not in data:
            data = {**data, "engine": "art" if data.get("composition") == "art" else "native"}
        return data


ATTACK_SPECS: dict[str, type[AttackBase]] = {
    c.model_fields["kind"].annotation.__args__[0]: c  # type: ignore[union-attr]
    for c in (
        FGSMAttack,
        PGDAttack,
        APGDAttack,
        FABAttack,
        SquareAttack,
        CWL2Attack,
        CWLinfAttack,
        DeepFoolAttack,
        AutoAttackSpec,
    )
}
"""Registered attack spec models by kind (pure; imports no torch)."""

Problem = tuple[tuple[Any, ...], str]


def check_attacks(spec: Any) -> Iterator[Problem]:
    """Engine/norm support, budgets in the right norm, and the eval curve/checklist settings."""
    threat = spec.threat
    names = [a.name for a in spec.attacks]
    for i, attack in enumerate(spec.attacks):
        where = ("attacks", i)
        norms = ATTACKS.get(attack.kind).meta["norms"]
        if attack.engine not in norms:
            yield (
                (*where, "engine"),
                f"attack kind '{attack.kind}' has no {attack.engine} engine; use engine: "
                + " or ".join(norms),
            )
            continue
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
        if isinstance(attack, AutoAttackSpec):
            want = "native" if attack.composition == "standard" else "art"
            if attack.engine != want:
                yield (
                    (*where, "engine"),
                    f"composition '{attack.composition}' runs on engine {want} "
                    "(the standard one needs FAB, which ART lacks); remove engine or set it to "
                    f"{want}",
                )
    ev = spec.eval
    if ev.curve_attacks is not None:
        for j, n in enumerate(ev.curve_attacks):
            if n not in names:
                from runner.registry import did_you_mean

                yield (
                    ("eval", "curve_attacks", j),
                    f"no attack named '{n}'{did_you_mean(n, names)}; "
                    f"attacks: {', '.join(names) or '(none)'}",
                )
    if ev.eps_curve is not None:
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
            ATTACKS.get(a.kind).meta.get("pgd_type") and (a.norm or threat.norm) == threat.norm
            for a in spec.attacks
        ):
            yield (
                ("eval", "eps_curve"),
                "no attack to draw the curve with: add a pgd or apgd attack at the threat norm, "
                "or name attacks in eval.curve_attacks",
            )
