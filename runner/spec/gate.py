"""The robustness gate: thresholds a CI pipeline enforces on an experiment's results (pure).

``advrun run`` and ``advrun eval`` exit with :data:`runner.errors.EXIT_GATE` when a rule fails;
the logic lives in :mod:`runner.report.gate`, the spec model and its cross-field checks here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from runner.spec.base import StrictModel

Problem = tuple[tuple[Any, ...], str]

WORST_CASE = "worst_case"  # the per-example worst case over the attack suite (runner.eval.evaluate)


class GateRule(StrictModel):
    """Thresholds for the runs of the named models and recipes (all of them when omitted)."""

    models: list[str] | None = Field(
        None, min_length=1, description="model names this rule applies to (default: every model)"
    )
    recipes: list[str] | None = Field(
        None,
        min_length=1,
        description="recipe names this rule applies to (default: every recipe)",
    )
    min_clean_accuracy: float | None = Field(
        None, ge=0, le=1, description="minimum clean test accuracy, a fraction in [0, 1]"
    )
    min_accuracy: dict[str, float] = Field(
        default_factory=dict,
        description="minimum accuracy under named attacks of the suite, or 'worst_case' for the "
        "per-example worst case over the suite, e.g. {pgd20: 0.7, worst_case: 0.6}",
    )
    max_attack_success_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="maximum backdoor attack success rate (needs a poisoning block), in [0, 1]",
    )
    checklist: Literal["ignore", "no_fail", "pass"] = Field(
        "ignore",
        description="evaluation checklist: ignore it; no_fail (warnings allowed); pass (every "
        "check must pass). A checklist that was not run fails no_fail and pass",
    )
    over_seeds: Literal["mean", "every"] = Field(
        "mean",
        description="mean: the mean over seeds must meet each threshold; every: each seed must",
    )
    statistic: Literal["accuracy", "ci_low"] = Field(
        "accuracy",
        description="compare the point accuracy, or the lower bound of its 95% confidence "
        "interval (robust with 95% confidence)",
    )


DEFAULT_MAX_DROP = {WORST_CASE: 0.02, "clean": 0.01}


class GateSpec(StrictModel):
    """A robustness gate: every rule must hold, and no accuracy may drop from the baseline by
    more than allowed, or the command exits with code 3."""

    rules: list[GateRule] = Field(
        default_factory=list, description="threshold rules; all must hold for the gate to pass"
    )
    baseline: str | None = Field(
        None,
        min_length=1,
        description="the last accepted release: an output directory, a run directory or a "
        "runs/<run>/model_card.json (with its examples.parquet beside it); the new results must "
        "not drop from it by more than max_drop on the same test examples (advrun eval "
        "--baseline DIR sets it from the command line)",
    )
    max_drop: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_DROP),
        description="largest allowed accuracy drop from the baseline, a fraction, per 'clean', "
        "'worst_case' or an attack of the suite; a larger drop fails only when the paired "
        "per-example test (exact McNemar) says it is not noise",
    )
    significance: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="p-value below which a drop larger than max_drop is real (fails the gate)",
    )
