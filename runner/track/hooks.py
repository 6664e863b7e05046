"""MLflow's run hooks: live logging while runs train (:data:`runner.execute.hooks.INTEGRATIONS`
loads :func:`make_hooks` by name), each event one sync of the run directory by the
:class:`~runner.track.mlflow.Tracker`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.execute.hooks import RunHooks
from runner.track.mlflow import Tracker


class MlflowHooks(RunHooks):
    """Live logging while runs train; rebuilt from plain settings in any process."""

    name = "mlflow"

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.tracker = Tracker(settings)
        self._parents: dict[Path, str] = {}

    def _parent(self, run_dir: Path) -> str:
        out = run_dir.parent.parent
        if out not in self._parents:
            study = self.settings.get("study")
            t = self.tracker
            self._parents[out] = t.study_id(out, study) if study else t.parent_id(out)
        return self._parents[out]

    def _sync(self, run_dir: Path, live: bool, what: str) -> None:
        t = self.tracker
        t.guarded(run_dir, what, lambda: t.sync_run(run_dir, self._parent(run_dir), live=live))

    def run_started(self, run, run_dir: Path) -> None:
        self._sync(Path(run_dir), True, f"{run.slug} started")

    def epoch_done(self, run, run_dir: Path, row: dict[str, Any]) -> None:
        self._sync(Path(run_dir), True, f"{run.slug} epoch {row.get('epoch')}")

    def run_done(self, run, run_dir: Path, metrics) -> None:
        self._sync(Path(run_dir), False, f"{run.slug} done")

    def run_failed(self, run, run_dir: Path, diagnosis: str) -> None:
        self._sync(Path(run_dir), False, f"{run.slug} failed")


def make_hooks(settings: dict[str, Any], opts: Any) -> MlflowHooks:
    """The ``INTEGRATIONS["mlflow"]`` factory (see :mod:`runner.execute.hooks`)."""
    return MlflowHooks(settings)
