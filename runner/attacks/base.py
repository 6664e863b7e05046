"""The attack plug-in contract: one class per kind, in one file, registered by one catalog line.

An attack file (``runner/attacks/<kind>.py``) holds the kind's spec model (a subclass of
:class:`runner.spec.attacks.AttackBase` with ``kind: Literal["<kind>"]``) and a subclass of
:class:`Attack` naming it as ``config``, with class attributes for what validation needs (the
engines and norms it supports, whether it minimises the norm, whether robustness curves draw it
by default), its native implementation, its optional ART factory and its own cross-field checks.

The module imports no torch, NumPy or ART at its top: ``advrun validate`` loads it for its spec
model. Implementations import what they need inside their methods (heavy kernels live in
:mod:`runner.attacks.native` and :mod:`runner.attacks.kernels`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from runner.errors import AdvrunError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor, nn

    from runner.spec.attacks import AttackBase

Problem = tuple[tuple[Any, ...], str]

BOTH: Mapping[str, tuple[str, ...]] = {"native": ("linf", "l2"), "art": ("linf", "l2")}
"""Both engines, both norms: the usual ``norms`` of a gradient attack."""


EOT_MAX = 1000
EOT_HELP = (
    "expectation over transformation: average each step's input gradient (APGD: and its loss) "
    f"over this many forward/backward passes, 1 to {EOT_MAX}; for a model that is random at "
    "test time (input noise, dropout, random transforms); each step costs this many passes"
)


def eot_native_engine(data: Any) -> Any:
    """A spec model's ``mode="before"`` step: with ``eot_iter`` > 1 and no ``engine`` given, the
    native engine (ART's attacks have no EoT over a model's own randomness)."""
    if isinstance(data, dict) and "engine" not in data:
        eot = data.get("eot_iter")
        if isinstance(eot, int) and not isinstance(eot, bool) and eot > 1:
            return {**data, "engine": "native"}
    return data


def check_eot(cfg: Any, where: tuple[Any, ...]) -> Iterator[Problem]:
    """EoT runs natively only: ART's PGD and APGD draw one gradient per step, and its EoT
    preprocessors sample input transforms the attacker names, not a model's own randomness."""
    if cfg.eot_iter > 1 and cfg.engine != "native":
        yield (
            (*where, "eot_iter"),
            f"eot_iter {cfg.eot_iter} needs engine: native (ART's {cfg.kind} has no expectation "
            "over a randomized model's passes); set engine: native or remove engine",
        )


def art_norm(norm: str) -> Any:
    """ART's name of a norm: ``np.inf`` or 2."""
    import numpy as np

    return np.inf if norm == "linf" else 2


class Attack:
    """One attack kind. ``cfg`` is its resolved spec model (eps and step sizes in pixel units).

    Class attributes: ``config`` the spec model; ``norms`` engine -> norms supported (an engine
    missing here is refused at validation); ``minimal_norm`` for attacks that minimise the
    perturbation instead of staying within eps (their result is projected into the threat
    model's ball); ``curve`` for the gradient attacks a robustness curve uses by default.
    """

    config: ClassVar[type[AttackBase]]
    norms: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    minimal_norm: ClassVar[bool] = False
    curve: ClassVar[bool] = False

    def __init__(self, cfg: AttackBase) -> None:
        self.cfg = cfg

    def native(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        lo: float,
        hi: float,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Adversarial examples for one batch, on x's device, with the model in eval mode.

        Every step must keep x + delta inside the eps-ball and the pixel range [lo, hi] (see
        :func:`runner.attacks.native.project`); the caller checks the result.
        """
        raise AdvrunError(f"attack kind '{self.cfg.kind}' has no native engine; use engine: art")

    def art(self, classifier: Any) -> Any:
        """ART's attack object over ``classifier`` (an ART PyTorchClassifier)."""
        raise AdvrunError(f"attack kind '{self.cfg.kind}' has no ART engine; use engine: native")

    def art_generate(self, model: nn.Module, x: Tensor, y: Tensor, classifier: Any) -> np.ndarray:
        """ART's adversarial examples for (x, y) as a NumPy array (labels as class indices)."""
        import numpy as np

        x_np = x.detach().cpu().numpy()
        y_np = y.detach().cpu().numpy().astype(np.int64)  # class indices; ART one-hot encodes them
        return self.art(classifier).generate(x=x_np, y=y_np)

    def cost(self) -> float:
        """Gradient passes an unbroken example costs at most (a forward-only pass counts 1/2),
        to order a cascade cheap to expensive; the default runs last."""
        return 1e9

    @classmethod
    def check(
        cls, cfg: AttackBase, where: tuple[Any, ...], spec: Any, eps: float
    ) -> Iterator[Problem]:
        """This kind's own cross-field problems (``eps`` is the attack's, resolved)."""
        return iter(())
