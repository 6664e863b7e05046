"""A stored run loaded for export: its typed config, its data (prepared once) and a checkpoint."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.compile import Audit, Run
from runner.errors import AdvrunError
from runner.fsio import contained
from runner.store import RUN_FILE, RunDir, RunMetrics


@dataclass(frozen=True)
class Loaded:
    """What every export of one run needs; ``model`` holds the weights of ``checkpoint``."""

    run_dir: Path
    run: Run
    metrics: RunMetrics | None
    device: Any
    data: Any
    allow_import: tuple[str, ...]
    model: Any
    checkpoint: Path

    def with_checkpoint(self, path: Path) -> Loaded:
        """The same run and data with a fresh model holding the weights of ``path``."""
        return dataclasses.replace(self, model=_model(self, path), checkpoint=path)


def stored_run(run_dir: Path) -> Run:
    """The typed run behind a run directory; audits are refused (they have no training and no
    checkpoint of their own)."""
    run = RunDir(run_dir).read_run()  # a StoreError when it is not a run this advrun can read
    if run is None:
        raise AdvrunError(f"{run_dir}: no {RUN_FILE}; give a run directory such as OUT/runs/<run>")
    if isinstance(run, Audit):
        raise AdvrunError(
            f"{run_dir} is an audit of an external checkpoint (advrun eval); export-adv rebuilds "
            "trained runs from their own checkpoints"
        )
    return run


def evaluated_checkpoint(run_dir: Path, metrics: RunMetrics | None, run: Run) -> Path:
    """The checkpoint the run's reported numbers came from (else the last one)."""
    which = (metrics.checkpoint if metrics else None) or run.eval.checkpoint
    for name in (str(which), "last"):
        path = contained(run_dir, "checkpoints", f"{name}.pt")
        if path.exists():
            return path
    raise AdvrunError(f"{run_dir}: no checkpoint under checkpoints/; train the run first")


def last_checkpoint(run_dir: Path) -> Path:
    path = contained(run_dir, "checkpoints", "last.pt")
    if not path.exists():
        raise AdvrunError(f"{run_dir}: no checkpoints/last.pt; train the run first")
    return path


def load(run_dir: Path, run: Run, device_name: str, allow_import: list[str]) -> Loaded:
    """The run's data on the device and a model with its evaluated checkpoint's weights."""
    if not re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", device_name):
        raise AdvrunError(f"--device '{device_name}' is not one of auto, cpu, mps, cuda, cuda:N")
    from runner.device import select_device, set_threads
    from runner.execute.prepare import prepare

    metrics = RunDir(run_dir).read_metrics()
    device = select_device(device_name)
    set_threads(run.threads, run.deterministic)
    data = prepare(run.data, run.threat.pixel_range, device)
    recorded = metrics.data_sha256 if metrics else None
    if recorded and recorded != data.sha256:
        raise AdvrunError(
            f"the data changed since this run was evaluated (sha256 {data.sha256[:12]} != "
            f"{recorded[:12]}); an export would not match its reported accuracy"
        )
    ld = Loaded(run_dir, run, metrics, device, data, tuple(allow_import), None, Path())
    return ld.with_checkpoint(evaluated_checkpoint(run_dir, metrics, run))


def _model(ld: Loaded, checkpoint: Path):
    from runner.models import build_for_spec
    from runner.train.state import load_checkpoint

    run, data = ld.run, ld.data
    model = build_for_spec(
        run.model, data.input_shape, data.num_classes, run.threat.pixel_range,
        list(ld.allow_import),
    ).to(ld.device)  # fmt: skip
    model.load_state_dict(load_checkpoint(checkpoint, ld.device))
    model.eval()
    return model
