"""The model card of a run (``model_card.json``), in the spirit of RobustBench's model entries.

The report writes it beside the run's results (see :func:`runner.report.cards.model_card`); a card
describes current results only, so a run without results has none.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from runner.store.records import (
    CertifiedSummary,
    ChecklistItem,
    CheckpointProvenance,
    EscalationRecord,
    PoisoningResult,
    Record,
)

CARD_SCHEMA = "advrun.model_card/1"


class CardResult(Record):
    """One accuracy of the card (``results`` maps each attack, clean, worst_case to one)."""

    accuracy: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    kind: str | None = None
    norm: str | None = None
    eps: float | None = None
    scope: str | None = None
    broken: int | None = None
    attacked: int | None = None


class OffThreatAttack(Record):
    """An attack measured outside the threat model (another norm, a larger eps)."""

    name: str
    kind: str | None = None
    norm: str | None = None
    eps: float | None = None
    accuracy: float | None = None


class CardRecipe(Record):
    name: str | None = None
    kind: str | None = None
    seed: int | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None
    best_epoch: int | None = None
    stopped_early: str | None = None


class CardCost(Record):
    train_seconds: float | None = None
    eval_seconds: float | None = None
    train_forward_passes: int | None = None
    train_backward_passes: int | None = None


class CardProvenance(Record):
    device: str | None = None
    versions: dict[str, str | None] | None = None
    git_commit: str | None = None
    started: str | None = None
    finished: str | None = None


class ModelCard(Record):
    """Dataset, architecture, threat model, clean and robust accuracy (and by which attacks),
    recipe, checklist, poisoning, cost and provenance of one evaluated run."""

    model_config = ConfigDict(populate_by_name=True)

    card_schema: str = Field(CARD_SCHEMA, alias="schema")
    name: str
    experiment: str
    dataset: str | None = None
    data: dict[str, Any] | None = None  # the run's data section, as run
    data_sha256: str | None = None
    architecture: str | None = None
    model: str | None = None
    normalization: dict[str, Any] | None = None  # inside the model's forward pass
    class_names: list[str] | None = None
    threat_model: str | None = None  # RobustBench's name: Linf, L2
    eps: float | None = None
    eps_text: str = ""
    pixel_range: list[float] | None = None
    clean_acc: float | None = None
    robust_acc: float | None = None
    robust_acc_attack: str | None = None
    worst_case_attacks: list[str] = Field(default_factory=list)
    off_threat_attacks: list[OffThreatAttack] = Field(default_factory=list)
    n_test: int | None = None
    results: dict[str, CardResult] = Field(default_factory=dict)
    recipe: CardRecipe = Field(default_factory=CardRecipe)
    checkpoint: CheckpointProvenance | None = None  # an audit's model file (model card v2)
    checklist: list[ChecklistItem] | None = None
    escalation: EscalationRecord | None = None  # larger budgets the evidence asked for (v5)
    escalation_text: str | None = None  # the escalation in words (v5)
    # RobustBench's flag, from the evidence: a failed check that escalation did not settle, or a
    # random model attacked without EoT
    unreliable: bool | None = None
    unreliable_reasons: list[str] = Field(default_factory=list)  # why (v5)
    poisoning: PoisoningResult | None = None
    # randomized smoothing, per noise level: sigma, n0, n, alpha, the certified-accuracy curve
    # (L2 radii with the L-inf radius each implies), abstentions, ACR, smoothed clean accuracy
    certified: list[CertifiedSummary] = Field(default_factory=list)
    cost: CardCost = Field(default_factory=CardCost)
    provenance: CardProvenance = Field(default_factory=CardProvenance)
