"""Observers of execution: tracking integrations (MLflow, ...) plug in here.

Hooks are built from plain :class:`~runner.execute.options.Options` in the process that runs the
run (``hooks_for``), so a job spawned by ``--jobs``, a Ray task or a torchrun rank builds its own.
A hook never fails or slows a run down: an exception it raises is reported once and the run goes on
(the hook is expected to record what it could not do, so it can be caught up later).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.compile import Run
    from runner.execute.options import Options
    from runner.store import RunMetrics


class RunHooks:
    """No-op base class: override what you need."""

    name = "hook"

    def run_started(self, run: Run, run_dir: Path) -> None:
        """Before training (or resuming) starts."""

    def epoch_done(self, run: Run, run_dir: Path, row: dict[str, Any]) -> None:
        """After each training epoch, with its row of epochs.csv."""

    def run_done(self, run: Run, run_dir: Path, metrics: RunMetrics) -> None:
        """After metrics.json is written and the run is marked done."""

    def run_failed(self, run: Run, run_dir: Path, diagnosis: str) -> None:
        """After the run is marked failed."""


class Hooks:
    """Every hook of an execution, each call guarded."""

    def __init__(self, hooks: list[RunHooks]) -> None:
        self.hooks = hooks
        self._reported: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def call(self, method: str, *args: Any) -> None:
        for h in self.hooks:
            try:
                getattr(h, method)(*args)
            except Exception as e:  # a tracking problem must never cost a training run
                if h.name not in self._reported:
                    self._reported.add(h.name)
                    print(f"{h.name}: {type(e).__name__}: {e} (the run goes on)", file=sys.stderr)


# a key of Options.tracking -> "module:factory"; the factory takes (its settings, opts) and
# returns a RunHooks. Imported only when the key is present (the engines are optional extras).
INTEGRATIONS: dict[str, str] = {"mlflow": "runner.track.hooks:make_hooks"}


def hooks_for(opts: Options) -> Hooks:
    """The hooks that ``opts.tracking`` asks for (none by default)."""
    import importlib

    found: list[RunHooks] = []
    for key, settings in (opts.tracking or {}).items():
        if settings is None or key not in INTEGRATIONS:
            continue
        module, _, attr = INTEGRATIONS[key].partition(":")
        found.append(getattr(importlib.import_module(module), attr)(settings, opts))
    return Hooks(found)
