"""``autoattack``: AutoAttack, as the standard or the rand composition of Croce & Hein 2020
(native) or as ART's own AutoAttack defaults (engine art)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from runner.attacks.base import BOTH, Attack, Problem, art_norm
from runner.spec.attacks import AttackBase, Engine

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

RAND_EOT_ITER = 20
"""EoT passes per step of the rand version (the original's ``apgd.eot_iter = 20``)."""


class AutoAttackSpec(AttackBase):
    """AutoAttack, in one of three clearly different compositions."""

    kind: Literal["autoattack"] = Field(description="AutoAttack")
    composition: Literal["standard", "rand", "art"] = Field(
        "standard",
        description="standard: Croce & Hein 2020 (APGD-CE, APGD-T, FAB-T, Square; native engine); "
        f"rand: their version for randomized defenses (APGD-CE and APGD-DLR, {RAND_EOT_ITER} EoT "
        "passes per step, 1 restart; native); "
        "art: ART's own AutoAttack defaults (APGD-CE, APGD-DLR, DeepFool, Square; engine art)",
    )
    engine: Engine = Field(
        "native", description="follows the composition (standard, rand: native; art: art)"
    )

    @model_validator(mode="before")
    @classmethod
    def _engine_follows_composition(cls, data: Any) -> Any:
        if isinstance(data, dict) and "engine" not in data:
            data = {**data, "engine": "art" if data.get("composition") == "art" else "native"}
        return data


def _base(cfg: AttackBase) -> dict[str, Any]:
    return {"eps": cfg.eps, "norm": cfg.norm, "batch_size": cfg.batch_size, "engine": "native"}


def standard_components(cfg: AttackBase) -> list[AttackBase]:
    """Croce & Hein 2020's standard AutoAttack: APGD-CE, APGD-T (DLR), FAB-T, Square (Linf)."""
    from runner.attacks.apgd import APGDAttack
    from runner.attacks.fab import FABAttack
    from runner.attacks.square import SquareAttack

    base = _base(cfg)
    parts: list[AttackBase] = [
        APGDAttack(name=f"{cfg.name}/apgd-ce", kind="apgd", loss="ce", targeted=False,
                   n_targets=9, steps=100, restarts=1, **base),
        APGDAttack(name=f"{cfg.name}/apgd-t", kind="apgd", loss="dlr", targeted=True,
                   n_targets=9, steps=100, restarts=1, **base),
        FABAttack(name=f"{cfg.name}/fab-t", kind="fab", n_targets=9, steps=100, **base),
    ]  # fmt: skip
    if cfg.norm == "linf":  # the L2 standard version has no Square
        parts.append(
            SquareAttack(name=f"{cfg.name}/square", kind="square", queries=5000, p_init=0.8,
                         restarts=1, **base)
        )  # fmt: skip
    return parts


def rand_components(cfg: AttackBase) -> list[AttackBase]:
    """Croce & Hein 2020's version for randomized defenses (``version='rand'``): APGD-CE and
    APGD-DLR (untargeted), 100 iterations, 1 restart, the gradient of each step averaged over
    20 passes (EoT)."""
    from runner.attacks.apgd import APGDAttack

    base = _base(cfg)
    return [
        APGDAttack(name=f"{cfg.name}/apgd-{loss}", kind="apgd", loss=loss, targeted=False,
                   steps=100, restarts=1, eot_iter=RAND_EOT_ITER, **base)
        for loss in ("ce", "dlr")
    ]  # fmt: skip


COMPONENTS: dict[str, Callable[[AttackBase], list[AttackBase]]] = {
    "standard": standard_components,
    "rand": rand_components,
}
"""The natively run compositions, by name: each attack of the cascade in order."""


class AutoAttack(Attack):
    """The standard and rand compositions run natively as a cascade; ``composition: art`` is
    ART's."""

    config = AutoAttackSpec
    norms = BOTH

    def native(
        self, model: nn.Module, x: Tensor, y: Tensor, lo: float, hi: float,
        generator: torch.Generator | None,
    ) -> Tensor:  # fmt: skip
        """The composition as a cascade (:meth:`cascade`); its adversarial examples."""
        return self.cascade(model, x, y, lo, hi, generator)[0]

    def cascade(
        self, model: nn.Module, x: Tensor, y: Tensor, lo: float, hi: float,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Each part attacks only what is still correct; returns the adversarial examples and
        which examples every verdict found correct.

        As in the original, one forward pass judges the clean inputs and one each part's output.
        On a randomized model those verdicts are random: the original reports an example broken
        if any of them misclassified it, while the suite's accuracy judges the returned point by
        one more pass (see docs/evaluation.md, Randomized models)."""
        import torch

        from runner.attacks import native
        from runner.catalog import ATTACKS

        x_adv = x.clone()
        with torch.no_grad():
            alive = model(x).argmax(1) == y
        for part in COMPONENTS[self.cfg.composition](self.cfg):
            idx = alive.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            adv = ATTACKS.load(part.kind)(part).native(model, x[idx], y[idx], lo, hi, generator)
            adv = x[idx] + native.project(x[idx], adv - x[idx], self.cfg.eps, self.cfg.norm, lo, hi)
            x_adv[idx] = adv
            with torch.no_grad():
                alive[idx] = model(adv).argmax(1) == y[idx]
        return x_adv, alive

    def art(self, classifier):
        """ART's own AutoAttack composition: APGD-CE and APGD-DLR (100 steps, 5 restarts),
        DeepFool, Square (5000 queries, 5 restarts); not the standard Croce & Hein 2020 one."""
        from art.attacks.evasion import AutoAttack as ARTAutoAttack

        c = self.cfg
        attack = ARTAutoAttack(
            classifier,
            norm=art_norm(c.norm),
            eps=c.eps,
            eps_step=2 * c.eps,
            batch_size=c.batch_size,
        )
        for sub in attack.attacks:  # its defaults print progress bars
            sub.verbose = False
        return attack

    @classmethod
    def check(cls, cfg: Any, where: tuple[Any, ...], spec: Any, eps: float) -> Iterator[Problem]:
        want = "art" if cfg.composition == "art" else "native"
        if cfg.engine != want:
            why = {"standard": "it needs FAB, which ART lacks", "rand": "ART's APGD has no EoT",
                   "art": "it is ART's own"}[cfg.composition]  # fmt: skip
            yield (
                (*where, "engine"),
                f"composition '{cfg.composition}' runs on engine {want} ({why}); remove engine "
                f"or set it to {want}",
            )
