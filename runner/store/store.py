"""The run store: one directory per run under ``<output>/runs/``, written atomically.

Layout of a run directory::

    run.json          the fully resolved run (what was asked)
    status.json       state (running/trained/done/failed), times, diagnosis
    checkpoints/      last.pt, best.pt (state_dicts), state.pt (resume point: optimizer, RNG, epoch)
    epochs.csv        per-epoch guardrail table
    metrics.json      clean and per-attack accuracy, cost, eval_hash
    examples.parquet  per-example outcomes
    model_card.json   the report's card of an evaluated run
    exports.json      adversarial exports (advrun export-adv)
    poisoning/        a poisoned run's defense (filter.json, the detector's training) and
                      clean-label poisons (the proxy's training, the crafted images)
    log.txt           what happened

The JSON files are typed records (:mod:`runner.store.records`), versioned and read and written
only here (:class:`RunDir`, :class:`Store`). A run is *done* when metrics.json matches the current
evaluation settings; *stale* when it is trained but its evaluation is out of date (re-evaluated
without retraining); *partial* when it was interrupted (resumed from its last epoch); *failed*
when it stopped with a diagnosis.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.compile import Audit, Plan, Run, run_dirname
from runner.fsio import contained
from runner.store import files
from runner.store.card import ModelCard
from runner.store.files import StoreError
from runner.store.records import (
    Execution,
    ExportEntry,
    Exports,
    PoisonFilter,
    RunMetrics,
    RunStatus,
)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def default_output_dir(spec_name: str) -> Path:
    return Path("reports") / re.sub(r"[^A-Za-z0-9._-]", "_", spec_name)


def read_epochs(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's epochs.csv as written (strings); [] before its first epoch."""
    path = Path(run_dir) / files.EPOCHS_FILE
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: unreadable ({e}); delete it to recompute") from None


def run_from_json(data: dict[str, Any], path: Path) -> Run | Audit:
    """The typed run (or audit) of a run.json's content, or a StoreError saying what to do."""
    from pydantic import ValidationError

    try:
        return Audit.from_json(data) if data.get("kind") == "audit" else Run.from_json(data)
    except (KeyError, TypeError, ValueError, ValidationError) as e:
        first = str(e).splitlines()[0][:160] if str(e) else ""
        raise StoreError(
            f"{path} is not a run this advrun can read ({type(e).__name__}: {first}); run the "
            "spec again to rewrite it"
        ) from None


@dataclass(frozen=True)
class StoredRun:
    """Everything stored for one run; any file may be missing (``found``: the directory exists).

    ``run`` is None when run.json is missing, or unreadable by this advrun (``problem`` says why:
    e.g. a run of a plug-in not registered here); the other records are still read.
    """

    id: str
    dir: Path
    found: bool
    run: Run | Audit | None = None
    status: RunStatus = field(default_factory=RunStatus)
    metrics: RunMetrics | None = None
    epochs: list[dict[str, str]] = field(default_factory=list)
    exports: list[ExportEntry] = field(default_factory=list)
    problem: str | None = None

    @property
    def state(self) -> str:
        """done (with metrics) | running | trained | failed | pruned | not run | unknown"""
        if self.metrics is not None and self.status.state == "done":
            return "done"
        return self.status.state or ("unknown" if self.found else "not run")

    @property
    def is_audit(self) -> bool:
        return isinstance(self.run, Audit) or (self.metrics is not None and self.metrics.is_audit)


class RunDir:
    """The files of one run directory, read and written as typed records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def _file(self, kind: files.FileKind) -> Path:
        return self.path / kind.name

    def exists(self) -> bool:
        return self.path.is_dir()

    @property
    def model_card_path(self) -> Path:
        """Where the card lies (a baseline may be named by it; MLflow logs it)."""
        return self._file(files.MODEL_CARD)

    @property
    def exports_path(self) -> Path:
        """Where the run's record of its adversarial exports lies."""
        return self._file(files.EXPORTS)

    # ---- run.json ---------------------------------------------------------------------------

    def has_run(self) -> bool:
        return self._file(files.RUN).exists()

    def read_run(self) -> Run | Audit | None:
        """The resolved run or audit; None without run.json; a StoreError when unreadable."""
        path = self._file(files.RUN)
        data = files.read_data(path, files.RUN)
        return None if data is None else run_from_json(data, path)

    def write_run(self, run: Run | Audit) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        files.write_data(self._file(files.RUN), files.RUN, run.to_json())

    # ---- status.json ------------------------------------------------------------------------

    def has_status(self) -> bool:
        return self._file(files.STATUS).exists()

    def read_status(self) -> RunStatus | None:
        return files.read_record(self._file(files.STATUS), files.STATUS, RunStatus)

    def write_status(self, status: RunStatus) -> None:
        files.write_record(self._file(files.STATUS), files.STATUS, status)

    def update_status(self, **changes: Any) -> RunStatus:
        """status.json with ``changes`` merged in (the other keys kept), validated."""
        old = self.read_status()
        data = {**(files.dump(old) if old is not None else {}), **changes}
        status = files.validated(RunStatus, data, self._file(files.STATUS), files.STATUS)
        self.write_status(status)
        return status

    def set_status(
        self, state: str, execution: Execution | None = None, **changes: Any
    ) -> RunStatus:
        """A new state (``updated`` now) with ``changes`` and the fields of ``execution``."""
        flat = files.dump(execution) if execution is not None else {}
        return self.update_status(**flat, **changes, state=state, updated=now())

    # ---- metrics.json -----------------------------------------------------------------------

    def has_metrics(self) -> bool:
        return self._file(files.METRICS).exists()

    def read_metrics(self) -> RunMetrics | None:
        return files.read_record(self._file(files.METRICS), files.METRICS, RunMetrics)

    def write_metrics(self, metrics: RunMetrics) -> None:
        files.write_record(self._file(files.METRICS), files.METRICS, metrics)

    def remove_metrics(self) -> None:
        self._file(files.METRICS).unlink(missing_ok=True)

    # ---- model_card.json --------------------------------------------------------------------

    def read_model_card(self) -> ModelCard | None:
        return files.read_record(self._file(files.MODEL_CARD), files.MODEL_CARD, ModelCard)

    def write_model_card(self, card: ModelCard) -> None:
        files.write_record(self._file(files.MODEL_CARD), files.MODEL_CARD, card)

    def remove_model_card(self) -> None:
        self._file(files.MODEL_CARD).unlink(missing_ok=True)

    # ---- poisoning/ ---------------------------------------------------------------------------

    @property
    def poisoning_dir(self) -> Path:
        """Where the poisoning steps keep their work: the detector's and the clean-label proxy's
        training (``detector/``, ``proxy/``), the crafted poisons and filter.json."""
        return self.path / "poisoning"

    def read_poison_filter(self) -> PoisonFilter | None:
        path = self._file(files.POISON_FILTER)
        return files.read_record(path, files.POISON_FILTER, PoisonFilter)

    def write_poison_filter(self, record: PoisonFilter) -> None:
        self.poisoning_dir.mkdir(parents=True, exist_ok=True)
        files.write_record(self._file(files.POISON_FILTER), files.POISON_FILTER, record)

    # ---- exports.json, epochs.csv -----------------------------------------------------------

    def read_exports(self) -> list[ExportEntry]:
        found = files.read_record(self._file(files.EXPORTS), files.EXPORTS, Exports)
        return list(found.adversarial_exports) if found is not None else []

    def record_export(self, entry: ExportEntry) -> None:
        """Add (or replace, same file) an entry of exports.json, atomically."""
        kept = [e for e in self.read_exports() if e.file != entry.file]
        files.write_record(
            self._file(files.EXPORTS), files.EXPORTS, Exports(adversarial_exports=[*kept, entry])
        )

    def read_epochs(self) -> list[dict[str, str]]:
        return read_epochs(self.path)

    # ---- everything -------------------------------------------------------------------------

    def read(self, run_id: str | None = None) -> StoredRun:
        """Every record of the directory. ``run_id``: the id it should hold (a plan's run);
        otherwise the id its metrics or run.json name, else the directory's name."""
        if not self.exists():
            return StoredRun(id=run_id or self.path.name, dir=self.path, found=False)
        metrics = self.read_metrics()
        run, problem = None, None
        try:
            run = self.read_run()
        except StoreError as e:
            problem = str(e)
        rid = run_id or (metrics.run_id if metrics else run.id if run else self.path.name)
        return StoredRun(
            id=rid,
            dir=self.path,
            found=True,
            run=run,
            status=self.read_status() or RunStatus(),
            metrics=metrics,
            epochs=self.read_epochs(),
            exports=self.read_exports(),
            problem=problem,
        )


RunRef = Run | Audit | str  # a run, an audit, or a run id


class Store:
    """An output directory's run store: ``<root>/runs/<run>/``, one :class:`RunDir` per run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run: RunRef) -> Path:
        run_id = run if isinstance(run, str) else run.id
        return contained(self.runs_dir, run_dirname(run_id))

    def at(self, run: RunRef) -> RunDir:
        return RunDir(self.run_dir(run))

    def read(self, run: RunRef) -> StoredRun:
        """Every record of one run (``found`` is False when it has no directory yet)."""
        return self.at(run).read(run if isinstance(run, str) else run.id)

    def write_run(self, run: Run | Audit) -> None:
        self.at(run).write_run(run)

    def read_status(self, run: RunRef) -> RunStatus:
        """The run's status (empty, ``state`` None, before its first)."""
        return self.at(run).read_status() or RunStatus()

    def set_status(
        self, run: RunRef, state: str, execution: Execution | None = None, **changes: Any
    ) -> RunStatus:
        """A new state for the run (see :meth:`RunDir.set_status`)."""
        return self.at(run).set_status(state, execution, **changes)

    def write_status(self, run: RunRef, status: RunStatus) -> None:
        """status.json replaced by ``status``."""
        self.at(run).write_status(status)

    def read_metrics(self, run: RunRef) -> RunMetrics | None:
        return self.at(run).read_metrics()

    def write_metrics(self, run: RunRef, metrics: RunMetrics) -> None:
        self.at(run).write_metrics(metrics)

    def remove_metrics(self, run: RunRef) -> None:
        self.at(run).remove_metrics()

    def read_epochs(self, run: RunRef) -> list[dict[str, str]]:
        return self.at(run).read_epochs()

    def status(self, run: Run) -> str:
        """new | done | failed | stale | partial: what executing ``run`` has to do."""
        d = self.at(run)
        if not d.has_status() and not (d.path / "checkpoints").exists():
            return "new"  # nothing yet (a directory holding only a fresh claim)
        state = (d.read_status() or RunStatus()).state
        if state == "done":
            metrics = d.read_metrics()
            if metrics is not None and metrics.eval_hash == run.eval_hash:
                return "done"
        if state == "failed":
            return "failed"
        if (d.path / "checkpoints" / "last.pt").exists() and state in ("trained", "done"):
            return "stale"
        return "partial"

    def statuses(self, plan: Plan) -> dict[str, str]:
        return {r.id: self.status(r) for r in plan.runs}

    # ---- listing ----------------------------------------------------------------------------

    def run_dirs(self) -> Iterator[RunDir]:
        """Every run directory under runs/, by name."""
        if self.runs_dir.is_dir():
            for d in sorted(p for p in self.runs_dir.iterdir() if p.is_dir()):
                yield RunDir(d)

    def audits(self, eval_hash: str | None) -> list[RunMetrics]:
        """Metrics of the models audited with ``advrun eval`` under these evaluation settings."""
        found = []
        for d in self.run_dirs():
            m = d.read_metrics() if d.has_metrics() else None
            if m is not None and m.is_audit and m.eval_hash == eval_hash:
                found.append(m)
        return found

    def evaluated(self, plan: Plan) -> list[RunMetrics]:
        """Metrics of every run evaluated under the plan's current evaluation settings: the
        plan's runs, then models audited with ``advrun eval`` (``kind: audit``)."""
        found = []
        for run in plan.runs:
            m = self.read_metrics(run)
            if m is not None and m.eval_hash == run.eval_hash:
                found.append(m)
        if plan.runs:
            found += self.audits(plan.runs[0].eval_hash)
        return found
