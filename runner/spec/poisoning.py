"""The ``poisoning:`` block: a simulated backdoor attacker on the training set, and a defense.

``scenario: backdoor``: the attacker stamps a trigger (ART's backdoor patterns) onto a fraction of
the training images from other classes and relabels them as the target class.
``scenario: clean_label`` (Turner, Tsipras & Madry 2019): the attacker picks images of the target
class, keeps their correct labels, perturbs them adversarially (PGD on a model trained on clean
data) so that they are hard to learn from their content, and stamps the trigger. Evaluation then
reports the attack success rate (ASR) beside clean and robust accuracy.

``defense`` (a list sweeps) filters the training set before the final training: a detector
(:data:`runner.catalog.DEFENSES`) flags suspected poisons from the penultimate-layer features
of a model trained on the poisoned set; the run trains on the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from runner import expr
from runner.catalog import DEFENSES
from runner.registry import did_you_mean
from runner.spec.base import MAX_SEED, Expr, StrictModel

MAX_DIMS = 4096
# the ``attack`` names of the poisoning rows of results.csv: reserved in a poisoned spec
RESULT_NAMES = ("asr", "source_accuracy", "clean_before", "source_accuracy_before",
                "asr_before", "filter_precision", "filter_recall", "filter_f1",
                "filter_removed")  # fmt: skip


class PoisoningSpec(StrictModel):
    """A backdoor poisoning attack on the training data, and the defense against it."""

    scenario: Literal["backdoor", "clean_label"] = Field(
        "backdoor",
        description="backdoor: images of other classes, trigger stamped, relabelled target "
        "(ART's PoisoningAttackBackdoor); clean_label: images of the target class keep their "
        "label, are perturbed adversarially to be hard to learn, then stamped (Turner, Tsipras & "
        "Madry 2019; ART's PoisoningAttackCleanLabelBackdoor with engine: art)",
    )

    trigger: Literal["pattern", "pixel"] = Field(
        "pattern",
        description="pattern: ART's add_pattern_bd (a 4-pixel checkerboard near the bottom-right "
        "corner); pixel: ART's add_single_bd (one pixel)",
    )
    target: int = Field(0, ge=0, description="the class the attacker wants triggered images to get")
    source: int | None = Field(
        None,
        ge=0,
        description="backdoor: poison images of this class only (a source -> target backdoor, as "
        "in Tran et al. and Chen et al.); null: images of every class but the target",
    )
    fraction: float = Field(
        0.1, gt=0, lt=1, description="share of the training set replaced by poisoned images"
    )
    distance: int = Field(
        1, ge=1, description="trigger offset from the bottom-right corner in pixels (1: the corner)"
    )
    pixel_value: Expr | None = Field(
        None,
        description="value of the trigger pixels in pixel units (default: the top of pixel_range, "
        "so the trigger is visible on a dark background)",
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="seed of which training images are poisoned (0 to 2**32-1; fixed across run "
        "seeds)",
    )
    engine: Literal["native", "art"] = Field(
        "native",
        description="clean_label: who crafts the perturbation: native (advrun's PGD on the "
        "device) or art (ART's PoisoningAttackCleanLabelBackdoor, the reference)",
    )
    perturbation: str | None = Field(
        None,
        max_length=80,
        description="clean_label: the name of a pgd attack of attacks: whose eps, norm, step "
        "size and steps craft the perturbation (default: PGD at the threat eps, 10 steps of "
        "eps/4)",
    )
    defense: str | list[str] = Field(
        "none",
        description="filter the training set before the final training: "
        + ", ".join(DEFENSES.names())
        + "; a list sweeps (one run per defense)",
    )
    eps_multiplier: float = Field(
        1.5,
        gt=0,
        le=100,
        description="spectral_signatures: remove eps_multiplier x expected_fraction of each "
        "class (1.5 as Tran, Li & Madry 2018)",
    )
    expected_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="spectral_signatures: the defender's bound on the share of poisons in a "
        "class, in (0, 1) (default: the attack's real share of the target class, as the "
        "paper's experiments assume)",
    )
    dims: int = Field(
        10,
        ge=1,
        le=MAX_DIMS,
        description="activation_clustering: features reduced to this many dimensions before "
        "2-means (10 as Chen et al. 2018)",
    )
    reduce: Literal["ica", "pca"] = Field(
        "ica", description="activation_clustering: ICA (Chen et al. 2018) or PCA (ART's default)"
    )
    size_threshold: float = Field(
        0.35,
        gt=0,
        le=0.5,
        description="activation_clustering: the smaller cluster of a class is removed when it "
        "holds at most this share of the class (0.35: Chen et al.'s relative size; 0.5: always, "
        "as ART's cluster_analysis='smaller')",
    )
    feature_layer: str | None = Field(
        None,
        max_length=200,
        description="the module whose output the detectors read, by its name in "
        "model.named_modules() (default: the input of the model's last linear layer, the "
        "penultimate features)",
    )

    @property
    def defenses(self) -> list[str]:
        """The defense names (one, or the swept list)."""
        return self.defense if isinstance(self.defense, list) else [self.defense]

    def removal_fraction(self, expected: float) -> float:
        """Share of each class spectral_signatures removes at ``expected`` poisons per class."""
        return self.eps_multiplier * (
            expected if self.expected_fraction is None else self.expected_fraction
        )


def check(spec: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    """The trigger's pixel value lies in the pixel range; the result name 'asr' is free; the
    defenses exist and remove a share of each class in (0, 1); a clean-label perturbation names
    a pgd attack of the suite."""
    p = getattr(spec, "poisoning", None)
    if p is None:
        return
    yield from _check_defenses(p)
    yield from _check_clean_label(p, spec)
    for i, attack in enumerate(spec.attacks):
        if attack.name == "asr":
            yield (
                ("attacks", i, "name"),
                ("'asr' is reserved for the backdoor attack success rate; pick another name"),
            )
        elif attack.name in RESULT_NAMES:
            yield (
                ("attacks", i, "name"),
                f"'{attack.name}' is reserved for a poisoning result row; pick another name",
            )
    if p.pixel_value is None:
        return
    lo, hi = spec.threat.pixel_range
    try:
        value = expr.evaluate(p.pixel_value)
    except ValueError as e:
        yield ("poisoning", "pixel_value"), str(e)
        return
    if not lo <= value <= hi:
        yield (
            ("poisoning", "pixel_value"),
            f"pixel_value {value:g} is outside pixel_range [{lo:g}, {hi:g}]",
        )


def _check_defenses(p: PoisoningSpec) -> Iterator[tuple[tuple[Any, ...], str]]:
    names = DEFENSES.names()
    chosen = p.defenses
    if not chosen:
        yield ("poisoning", "defense"), "an empty list sweeps over nothing; give one or several"
    for i, name in enumerate(chosen):
        if name not in names:
            where = (
                ("poisoning", "defense", i)
                if isinstance(p.defense, list)
                else ("poisoning", "defense")
            )
            yield (
                where,
                f"unknown poisoning defense '{name}'{did_you_mean(name, names)}; choose one of: "
                + ", ".join(names),
            )
    if len(set(chosen)) < len(chosen):
        yield ("poisoning", "defense"), "a defense is listed twice; list each once"
    if "spectral_signatures" in chosen and p.expected_fraction is not None:
        share = p.removal_fraction(p.expected_fraction)
        if not 0 < share < 1:
            yield (
                ("poisoning", "eps_multiplier"),
                f"spectral_signatures would remove eps_multiplier x expected_fraction = "
                f"{p.eps_multiplier:g} x {p.expected_fraction:g} = {share:g} of each class; it must "
                "lie in (0, 1): lower eps_multiplier or expected_fraction",
            )


def _check_clean_label(p: PoisoningSpec, spec: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    if p.source is not None and p.source == p.target:
        yield (
            ("poisoning", "source"),
            f"source {p.source} is the target class; the attacker stamps images of another class",
        )
    if p.scenario == "clean_label" and p.source is not None:
        yield (
            ("poisoning", "source"),
            "a clean-label poison is an image of the target class; source applies to scenario: "
            "backdoor only (the trigger is tested on every other class)",
        )
    if p.scenario != "clean_label":
        for key in ("perturbation", "engine"):
            if key in p.model_fields_set:
                yield (
                    ("poisoning", key),
                    f"{key} applies to scenario: clean_label only; remove it or set the scenario",
                )
        return
    if p.perturbation is None:
        return
    names = [a.name for a in spec.attacks]
    found = next((a for a in spec.attacks if a.name == p.perturbation), None)
    if found is None:
        yield (
            ("poisoning", "perturbation"),
            f"no attack named '{p.perturbation}' in attacks:{did_you_mean(p.perturbation, names)}; "
            "name a pgd attack of the suite, or leave perturbation out",
        )
    elif found.kind != "pgd":
        yield (
            ("poisoning", "perturbation"),
            f"attack '{p.perturbation}' is a {found.kind} attack; the clean-label perturbation is "
            "a PGD attack (name an attack of kind pgd)",
        )
