"""Typed records of the files of a run directory (``run.json`` is a :class:`~runner.compile.Run`
or :class:`~runner.compile.Audit`).

Each record mirrors its file key for key: a record read from a file and written back gives the same
keys (fields never set stay out of the file, see :func:`runner.store.files.dump`).

New results are typed, never free dicts. A new kind of accuracy row (certified accuracy, poisoning
detection) is a new :data:`Scope` with the fields it needs added to :class:`ResultRow` (e.g. a
certified radius); a new block of a run's results (attack-budget escalations, checkpoint
provenance: file SHA-256, format, what was unwrapped) is a new record and an optional field of
:class:`RunMetrics`. An addition that older readers would reject (records forbid unknown keys)
bumps the file's version in :mod:`runner.store.files`, with its migration and a test.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runner.spec.poisoning import RESULT_NAMES

RunState = Literal["running", "trained", "done", "failed", "pruned"]
# clean accuracy, an attack of the suite (cumulative in a cascade, or on its own), an attack outside
# the threat model, the suite's worst case; randomized smoothing's certified accuracy at an L2
# radius and its smoothed classifier's clean accuracy (PREDICT); poisoning: the backdoor's ASR
# (older files: no scope, ``ResultRow.is_asr``), the source-class accuracy, the same before the
# defense and the filter's precision, recall, F1 and share removed (:data:`POISONING_ROWS`)
Scope = Literal[
    "clean",
    "cascade",
    "independent",
    "off_threat",
    "worst_case",
    "certified",
    "smoothed",
    "poisoning",
]
CheckStatus = Literal["pass", "warn", "fail"]


class Record(BaseModel):
    """A record of the run store: immutable, and no key it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Passes(Record):
    """Forward and backward passes through the model (a cost in model evaluations)."""

    forward_passes: int = 0
    backward_passes: int = 0


class ResultRow(Record):
    """One accuracy of a run with its 95% bootstrap interval (a row of results.csv).

    ``scope`` says what it measures (see :mod:`runner.eval.evaluate`); the bookkeeping of an
    attack (``engine`` .. ``backward_passes``) is present on attack rows only.
    """

    attack: str
    kind: str
    norm: str
    eps: float
    accuracy: float
    n: int
    ci_low: float
    ci_high: float
    scope: Scope | None = None
    engine: str | None = None
    attacked: int | None = None  # examples the attack was run on
    fooled: int | None = None
    broken: int | None = None  # examples it broke first (cascade)
    seconds: float | None = None
    forward_passes: int | None = None
    backward_passes: int | None = None
    # randomized smoothing (scope certified, smoothed): the noise level, the certified L2 radius
    # (= eps) and the L-inf radius it implies (radius / sqrt(d)), examples that abstained
    sigma: float | None = None
    radius: float | None = None
    linf_radius: float | None = None
    abstained: int | None = None

    @property
    def is_certified(self) -> bool:
        """A randomized-smoothing row (certified accuracy or the smoothed clean accuracy)."""
        return self.scope in ("certified", "smoothed")

    @property
    def is_asr(self) -> bool:
        """The backdoor's attack success rate (in ``accuracy``), not an accuracy."""
        return self.attack == "asr" and self.kind == "backdoor"

    @property
    def is_poisoning(self) -> bool:
        """A row of the poisoning scenario (ASR, source-class accuracy, filter quality): not an
        accuracy under attack of the comparison table."""
        return self.scope == "poisoning" or self.is_asr


class CurvePoint(Record):
    """Accuracy of one attack re-run at one eps of ``eval.eps_curve``."""

    attack: str
    eps: float
    accuracy: float
    n: int
    ci_low: float
    ci_high: float


class CertifiedPoint(Record):
    """Certified accuracy at one L2 radius (pixel units) with its 95% Clopper-Pearson interval."""

    radius: float
    linf_radius: float  # radius / sqrt(d): the L-inf ball inside the certified L2 ball
    accuracy: float
    ci_low: float
    ci_high: float
    certified: int  # examples certified at this radius with their true class


class CertifiedSummary(Record):
    """Randomized smoothing at one noise level: its parameters, the certified-accuracy curve,
    abstentions, the average certified radius and the smoothed classifier's clean accuracy."""

    sigma: float
    n0: int
    n: int
    alpha: float
    predict_n: int
    n_examples: int
    skip: int = 1
    seed: int = 0
    dim: int  # input values d (the L-inf radius is r / sqrt(d))
    abstained: int  # CERTIFY abstained (p_lower <= 1/2): not certified at any radius
    abstain_rate: float
    acr: float  # average certified radius (0 for an example not certified), L2
    acr_linf: float
    interval: str = "clopper-pearson"
    curve: list[CertifiedPoint] = Field(default_factory=list)
    smoothed_accuracy: float | None = None  # PREDICT (abstentions count as wrong)
    smoothed_ci_low: float | None = None
    smoothed_ci_high: float | None = None
    smoothed_abstained: int | None = None
    seconds: float | None = None

    def at(self, radius: float) -> CertifiedPoint | None:
        """The curve's point at ``radius`` (to a relative 1e-9), or None."""
        return next((p for p in self.curve if abs(p.radius - radius) <= 1e-9 * max(1, radius)),
                    None)  # fmt: skip


class ChecklistItem(Record):
    """One check of the evaluation checklist, with the numbers it judged."""

    check: str
    status: CheckStatus
    detail: str
    evidence: dict[str, float] = Field(default_factory=dict)


class EscalationRung(Record):
    """One larger budget the evidence asked for, run on the worst case's survivors: which
    attack at what budget, on which ladder, why, what it cost and what it broke."""

    attack: str  # its results column, e.g. square_5000
    kind: str
    ladder: str  # square | white_box
    budget: str  # in words, e.g. "5000 queries"
    reasons: list[str] = Field(default_factory=list)  # the signals that asked for it
    attacked: int
    broken: int  # examples it broke that every stage before it missed
    seconds: float
    forward_passes: int = 0
    backward_passes: int = 0
    eot_iter: int = 1  # passes each gradient step averaged (> 1: EoT, on a random model; v6)
    # on a random model, a rung without EoT: its breaks that most of CONFIRM_DRAWS draws at the
    # breaking input confirmed (v7). Since v7 such a rung counts only those (so == broken); a v7
    # record written before counted every one-draw break and may hold fewer here
    confirmed: int | None = None


CONFIRM_DRAWS = 20  # forward draws that confirm a break on a random model (EoT's 20 passes)


def _confirmed(rung: EscalationRung) -> str:
    if rung.confirmed is None or not rung.broken:
        return ""
    if rung.confirmed == rung.broken:
        return f", each confirmed by most of {CONFIRM_DRAWS} draws"
    return f", {rung.confirmed} confirmed by most of {CONFIRM_DRAWS} draws"


class EscalationRecord(Record):
    """The suite's escalation (metrics v5): the signals seen, each rung run, and whether every
    ladder settled (its last rung broke nothing new) or ran into its cap."""

    signals: list[str] = Field(default_factory=list)
    rungs: list[EscalationRung] = Field(default_factory=list)
    settled: bool
    broken: int = 0  # examples the escalation broke in all

    @property
    def words(self) -> str:
        """What escalated and why, in a sentence (the model card's and report's)."""
        ran = ", ".join(f"{r.attack} ({r.budget}: broke {r.broken}{_confirmed(r)})"
                        for r in self.rungs)  # fmt: skip
        last = self.rungs[-1] if self.rungs else None
        if not self.settled:
            end = ("it did not settle (its last rung still broke examples, or no larger budget "
                   "was left)")  # fmt: skip
        elif last is not None and last.broken and last.confirmed is not None:  # an early v7 record
            end = (f"it settled (the last rung broke nothing that most of {CONFIRM_DRAWS} draws of "
                   "this random model confirmed)")  # fmt: skip
        else:
            end = "it settled (the last rung broke nothing new)"
        return (
            f"The suite escalated on {'; '.join(self.signals)}: {ran or 'no rung ran'}; "
            f"{self.broken} more example(s) broken; {end}."
        )


POISONING_ROWS = RESULT_NAMES  # the ``attack`` names of the poisoning rows of results.csv


class Interval(Record):
    """A share with its 95% bootstrap interval over ``n`` examples."""

    value: float
    n: int
    ci_low: float
    ci_high: float


class BackdoorEffect(Record):
    """A model's clean test accuracy, its accuracy on the classes the trigger is stamped on
    (every class but the target: the source classes) and its attack success rate."""

    clean: Interval
    source: Interval
    asr: Interval


class ClassFilter(Record):
    """What a defense did to one class of the (poisoned) training set."""

    label: int
    examples: int
    poisons: int
    removed: int
    removed_poisons: int


class FilterMetrics(Record):
    """How well a defense's removals match the known poisons (poisons are the positives).

    ``precision`` is NaN when nothing was removed, ``recall`` when there were no poisons; the
    intervals are 95% bootstrap intervals over the removed examples and over the poisons.
    """

    defense: str
    examples: int
    removed: int
    tp: int
    fp: int
    tn: int
    fn: int
    precision: Interval
    recall: Interval
    f1: float
    per_class: list[ClassFilter] = Field(default_factory=list)
    feature_layer: str | None = None  # None: the input of the last linear layer
    removal_fraction: float | None = None  # spectral_signatures: share of each class removed
    detector_epochs: int | None = None
    seconds: float | None = None  # training the detector's model, features and detection


class PoisonFilter(Record):
    """poisoning/filter.json: a finished defense step of a run (resumes skip it): the removed
    training examples (indices into the poisoned training set), the filter's metrics and the
    detector model's effect ("before the defense")."""

    train_hash: str
    removed: list[int]
    metrics: FilterMetrics
    before: BackdoorEffect | None = None


class PoisoningResult(Record):
    """The backdoor's attack success rate on triggered test images outside the target class.

    ``asr`` .. ``ci_high`` are the evaluated model's (after the defense, if any); ``after`` adds its
    clean and source-class accuracy; ``before`` is the model the defense's detector read (clean
    training on the poisoned set), ``filter`` how the defense did (metrics.json version 4).
    """

    asr: float
    n: int
    ci_low: float
    ci_high: float
    target: int
    trigger: str
    fraction: float
    scenario: str | None = None  # backdoor | clean_label (None: a version 2 file, backdoor)
    defense: str | None = None
    poisons: int | None = None  # poisoned training examples
    after: BackdoorEffect | None = None
    before: BackdoorEffect | None = None
    filter: FilterMetrics | None = None


class Execution(Record):
    """How a run executed (``train``: how its training ran, maybe in another process)."""

    device: str | None = None
    threads: int | None = None
    deterministic: bool | None = None
    world_size: int | None = None
    batch_size: int | None = None
    per_rank_batch_size: int | None = None
    backend: str | None = None  # torchrun's process group
    train: Execution | None = None


# how training ran, kept in status.json (flat) and copied into metrics.json's execution.train
TRAIN_EXECUTION = ("device", "threads", "deterministic", "world_size", "batch_size",
                   "per_rank_batch_size")  # fmt: skip


class TrackingState(Record):
    """What a tracking integration (``tracking.mlflow``) logged of the run."""

    state: str  # synced | pending
    uri: str
    experiment: str
    error: str | None = None
    updated: str | None = None


class RunStatus(Record):
    """status.json: the run's state, times, diagnosis, training record and how it executed."""

    state: RunState | None = None
    updated: str | None = None
    started: str | None = None
    finished: str | None = None
    diagnosis: str | None = None
    resumable: bool | None = None  # a failure that a rerun resumes (a killed job)
    best_epoch: int | None = None
    stopped_early: str | None = None  # why training stopped early
    stopped_epoch: int | None = None
    pruned_at_epoch: int | None = None  # tuning: the trial was pruned here
    trial: int | None = None
    # how training executed (flat, as written since the first release)
    device: str | None = None
    threads: int | None = None
    deterministic: bool | None = None
    world_size: int | None = None
    batch_size: int | None = None
    per_rank_batch_size: int | None = None
    backend: str | None = None
    tracking: dict[str, TrackingState] = Field(default_factory=dict)

    @property
    def execution(self) -> Execution:
        """How training ran: the execution fields this status holds."""
        return Execution(
            **{k: getattr(self, k) for k in TRAIN_EXECUTION if k in self.model_fields_set}
        )


class CheckpointProvenance(Record):
    """The file an audit (``advrun eval --checkpoint``) loaded: its hash and format, what it
    held, and each step from that to the audited state_dict (see :mod:`runner.checkpoint`)."""

    path: str
    sha256: str
    size_bytes: int
    format: str  # torch-zip | torch-legacy | safetensors
    format_name: str  # the format in words
    found: str  # the file's top-level object, e.g. "a dict with keys 'model', 'ema', 'epoch'"
    unwrapped: list[str] = Field(default_factory=list)  # e.g. "took EMA weights under 'ema'"
    weights: Literal["raw", "ema"] | None = None  # which weights, when the file kept both kinds
    ignored: list[str] = Field(default_factory=list)  # keys beside the weights (optimizer, ...)
    saved_on: list[str] = Field(default_factory=list)  # storage locations written in the file
    loaded_on: str | None = None  # the device they were mapped to
    tensors: int | None = None
    parameters: int | None = None  # values in the state_dict (numel)
    source: str | None = None  # e.g. "robustbench model_dir layout", when not --checkpoint


class RunMetrics(Record):
    """metrics.json: identity, results, curves, checklist, poisoning, cost and provenance of one
    evaluated run (or ``advrun eval`` audit: ``kind`` and ``recipe`` are ``audit``)."""

    run_id: str
    slug: str
    eval_hash: str
    model: str
    arch: str
    recipe: str
    kind: str
    seed: int | None = None
    sweep: dict[str, Any] = Field(default_factory=dict)  # the swept spec values, as in the spec
    hyperparameters: dict[str, Any] = Field(default_factory=dict)  # the recipe's settings
    checkpoint: str | None = None  # best | last; an audit: the file audited
    checkpoint_sha256: str | None = None
    checkpoint_provenance: CheckpointProvenance | None = None  # an audit's file (metrics v2)
    best_epoch: int | None = None
    stopped_early: str | None = None
    stopped_epoch: int | None = None
    poisoning: PoisoningResult | None = None
    results: list[ResultRow] = Field(default_factory=list)
    curves: list[CurvePoint] = Field(default_factory=list)
    checklist: list[ChecklistItem] = Field(default_factory=list)
    escalation: EscalationRecord | None = None  # larger budgets on a masking signal (v5)

    certified: list[CertifiedSummary] = Field(default_factory=list)  # one per noise level
    data_sha256: str | None = None
    class_names: list[str] | None = None
    device: str | None = None
    execution: Execution | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_passes: Passes = Field(default_factory=Passes)
    eval_passes: Passes = Field(default_factory=Passes)
    versions: dict[str, str | None] = Field(default_factory=dict)
    git_commit: str | None = None

    @property
    def is_audit(self) -> bool:
        return self.kind == "audit"

    @property
    def group(self) -> str:
        """model@recipe[sweep values]: the unit the gate and the report's table judge."""
        return group_label(self.model, self.recipe, self.sweep, self.run_id)

    def row(self, attack: str) -> ResultRow | None:
        """The results row of ``attack`` (``clean``, ``worst_case``, an attack's name)."""
        return next((r for r in self.results if r.attack == attack), None)

    def accuracy(self, attack: str) -> float | None:
        r = self.row(attack)
        return None if r is None else r.accuracy

    @property
    def checklist_verdict(self) -> str:
        """not run | fail | warn | pass: the worst status of the checklist."""
        statuses = {c.status for c in self.checklist}
        if not self.checklist:
            return "not run"
        return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


def group_label(model: str | None, recipe: str | None, sweep: dict[str, Any], run_id: str) -> str:
    """model@recipe[sweep values]; the run id when the model is unknown."""
    if not model:
        return str(run_id)
    parts = [
        f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
        for k, v in (sweep or {}).items()
    ]
    return f"{model}@{recipe}" + (f"[{','.join(parts)}]" if parts else "")


class ExportEntry(Record):
    """One adversarial export of the run (exports.json), as its manifest line plus where the
    file lies relative to the run directory, when and with what attack settings."""

    file: str
    sha256: str
    kind: str  # test | train
    attack: str  # the attack's name; train:<recipe kind> for training-time examples
    eps: float
    norm: str
    n: int
    split: str
    accuracy: float | None = None
    checkpoint: str
    checkpoint_sha256: str
    data_sha256: str
    run_id: str
    advrun_version: str | None = None
    created: str | None = None
    attack_config: dict[str, Any] | None = None  # the attack's spec, as run


class Exports(Record):
    """exports.json: the adversarial exports of the run, one per file."""

    adversarial_exports: list[ExportEntry] = Field(default_factory=list)
