"""The run store: typed, versioned records of each run directory's files, read and written only
through :class:`Store` (an output directory) and :class:`RunDir` (one run's directory).

No module outside this package opens run.json, status.json, metrics.json, model_card.json or
exports.json by path (``tests/unit/test_store_paths.py`` checks it).
"""

from runner.store.card import ModelCard
from runner.store.files import (
    EPOCHS_FILE,
    EXPORTS_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    RUN_FILE,
    STATUS_FILE,
    StoreError,
)
from runner.store.records import (
    POISONING_ROWS,
    BackdoorEffect,
    CertifiedPoint,
    CertifiedSummary,
    ChecklistItem,
    ClassFilter,
    CurvePoint,
    EscalationRecord,
    EscalationRung,
    Execution,
    ExportEntry,
    FilterMetrics,
    Interval,
    Passes,
    PoisonFilter,
    PoisoningResult,
    ResultRow,
    RunMetrics,
    RunStatus,
    TrackingState,
    group_label,
)
from runner.store.store import (
    RunDir,
    Store,
    StoredRun,
    default_output_dir,
    now,
    read_epochs,
)

__all__ = [
    "POISONING_ROWS",
    "BackdoorEffect",
    "ClassFilter",
    "FilterMetrics",
    "Interval",
    "PoisonFilter",
    "EPOCHS_FILE",
    "EXPORTS_FILE",
    "METRICS_FILE",
    "MODEL_CARD_FILE",
    "RUN_FILE",
    "STATUS_FILE",
    "CertifiedPoint",
    "CertifiedSummary",
    "ChecklistItem",
    "CurvePoint",
    "EscalationRecord",
    "EscalationRung",
    "Execution",
    "ExportEntry",
    "ModelCard",
    "Passes",
    "PoisoningResult",
    "ResultRow",
    "RunDir",
    "RunMetrics",
    "RunStatus",
    "Store",
    "StoreError",
    "StoredRun",
    "TrackingState",
    "default_output_dir",
    "group_label",
    "now",
    "read_epochs",
]
