"""The JSON files of a run directory: names, versions, migrations, atomic typed reads and writes.

Every file carries ``schema_version`` (an integer per file). A file without it was written by the
release before versions existed (version 0, the same keys): it is migrated on read. A file newer
than this advrun reads is refused with a message naming the file and what to do. Changing what a
file holds in a way an older reader cannot read means: bump its ``version`` below and add the
migration from the old version (``migrations[old] = function(dict) -> dict``), with a test reading a
real file of the old version (``tests/unit/store_files/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from runner.errors import AdvrunError
from runner.fsio import read_json, write_json

VERSION_KEY = "schema_version"

RUN_FILE = "run.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "model_card.json"
EXPORTS_FILE = "exports.json"
EPOCHS_FILE = "epochs.csv"


M = TypeVar("M", bound=BaseModel)


class StoreError(AdvrunError):
    """A run-store file that this advrun cannot read (too new, or not what it should hold)."""


Migration = Callable[[dict[str, Any]], dict[str, Any]]


def _unversioned(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0 -> 1: the same keys; version 1 only adds ``schema_version``."""
    return data


def _before_certification(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 -> 3 (metrics.json, model_card.json): version 3 may hold randomized-smoothing
    results (``certified``, result rows of scope certified/smoothed), which a version-2 reader
    would refuse; a version-2 file has none, so its keys stay as they are."""
    return data


@dataclass(frozen=True)
class FileKind:
    """One kind of run-store file: its name, current version and how to read older ones."""

    name: str
    version: int
    what: str  # how a message names its content
    fix: str  # what to do about a file that is not valid
    migrations: dict[int, Migration] = field(default_factory=dict)

    def migrate(self, data: dict[str, Any], path: Path) -> dict[str, Any]:
        """``data`` (as read from ``path``) brought to the current version, without its key."""
        data = dict(data)
        found = data.pop(VERSION_KEY, 0)
        if not isinstance(found, int) or isinstance(found, bool) or found < 0:
            raise StoreError(f"{path}: schema_version {found!r} is not a version; {self.fix}")
        if found > self.version:
            raise StoreError(
                f"{path}: schema_version {found} is newer than this advrun reads "
                f"({self.what}, version {self.version}); upgrade advrun (pip install -U advrun) "
                "to read it, or write this run to another output directory (-o)"
            )
        for v in range(found, self.version):
            data = self.migrations[v](data)
        return data


def _no_weights_choice(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2 (run.json): an audit's model may say which of a checkpoint's weights were
    audited (``model.weights``: raw | ema); a version 1 file never does."""
    return data


def _no_escalation_settings(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 -> 3 (run.json): the eval section holds ``escalation`` (its settings); a
    version 2 file has none (read as the defaults)."""
    return data


RUN = FileKind(RUN_FILE, 3, "a resolved run", "run the spec again to rewrite it",
               {0: _unversioned, 1: _no_weights_choice, 2: _no_escalation_settings})  # fmt: skip
STATUS = FileKind(STATUS_FILE, 1, "a run status", "delete it and run the spec again",
                  {0: _unversioned})  # fmt: skip


def _no_checkpoint_provenance(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2 (metrics, model card): version 2 may add the audited file's record
    (``checkpoint_provenance``, the card's ``checkpoint``); a version 1 file has none."""
    return data


def _no_poisoning_defense(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 -> 4 (metrics, model card): version 4 may add the poisoning scenario, defense,
    filter metrics and the before/after effects to ``poisoning``, and rows of scope
    ``poisoning``; a version 3 file has none (its ``asr`` row has no scope)."""
    return data


def _no_escalation(data: dict[str, Any]) -> dict[str, Any]:
    """Version 4 -> 5 (metrics, model card): version 5 may record the suite's escalation
    (``escalation``; the card's ``escalation``, ``escalation_text`` and ``unreliable_reasons``);
    a version 4 file ran none."""
    return data


def _no_eot_rungs(data: dict[str, Any]) -> dict[str, Any]:
    """Version 5 -> 6 (metrics, model card): an escalation rung may record ``eot_iter`` (EoT
    rungs on a random model), which a version-5 reader would refuse; a version-5 rung ran
    without EoT (read as 1)."""
    return data


def _no_confirmed_breaks(data: dict[str, Any]) -> dict[str, Any]:
    """Version 6 -> 7 (metrics, model card): a Square rung on a random model may record
    ``confirmed`` (its breaks that most of 20 draws confirm), which a version-6 reader would
    refuse; a version-6 rung has none (read as None: not judged so)."""
    return data


METRICS = FileKind(METRICS_FILE, 7, "run metrics", "delete it to re-evaluate the run",
                   {0: _unversioned, 1: _no_checkpoint_provenance, 2: _before_certification,
                    3: _no_poisoning_defense, 4: _no_escalation, 5: _no_eot_rungs,
                    6: _no_confirmed_breaks})  # fmt: skip
MODEL_CARD = FileKind(MODEL_CARD_FILE, 7, "a model card", "run advrun report to rewrite it",
                      {0: _unversioned, 1: _no_checkpoint_provenance, 2: _before_certification,
                       3: _no_poisoning_defense, 4: _no_escalation, 5: _no_eot_rungs,
                       6: _no_confirmed_breaks})  # fmt: skip
POISON_FILTER_FILE = "poisoning/filter.json"
POISON_FILTER = FileKind(POISON_FILTER_FILE, 1, "a poisoning filter",
                         "delete it to run the defense again")  # fmt: skip
EXPORTS = FileKind(EXPORTS_FILE, 1, "an export index", "delete it and export again",
                   {0: _unversioned})  # fmt: skip


def read_data(path: Path, kind: FileKind) -> dict[str, Any] | None:
    """The file's content at the current version (no version key); None when it is missing."""
    data = read_json(path)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: not {kind.what} (a JSON object was expected); {kind.fix}")
    return kind.migrate(data, path)


def validated(model: type[M], data: dict[str, Any], path: Path, kind: FileKind) -> M:
    """``data`` as a ``model``, or a one-line StoreError naming the file, the key and the fix."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise StoreError(
            f"{path}: not {kind.what} this advrun can read ({where}: {err['msg']}); {kind.fix}"
        ) from None


def read_record(path: Path, kind: FileKind, model: type[M]) -> M | None:
    """The file as a typed record (migrated from an older version); None when it is missing."""
    data = read_data(path, kind)
    return None if data is None else validated(model, data, path, kind)


def dump(record: BaseModel) -> dict[str, Any]:
    """The record's keys as its file holds them: the fields that were set (explicit nulls
    included), aliases as written, numbers as Python floats (NaN stays NaN, as before)."""
    return record.model_dump(mode="python", exclude_unset=True, by_alias=True)


def write_data(path: Path, kind: FileKind, data: dict[str, Any]) -> None:
    """``data`` with the current ``schema_version``, atomically."""
    write_json(path, {**data, VERSION_KEY: kind.version})


def write_record(path: Path, kind: FileKind, record: BaseModel) -> None:
    write_data(path, kind, dump(record))
