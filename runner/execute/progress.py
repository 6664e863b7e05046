"""What an execution prints: one line per run event, and on a terminal a live summary line
(runs done / running / left, elapsed time, estimated time left) kept at the bottom of stderr."""

from __future__ import annotations

import sys
import time

from runner.compile import Run
from runner.store import RunMetrics


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def accuracies(m: RunMetrics) -> str:
    """The accuracies of an evaluated run on one line; per noise level of its certification,
    the smoothed clean accuracy and the average certified radius (the curve is in the table)."""
    parts = [f"{r.attack} {r.accuracy:.3f}" for r in m.results if not r.is_certified]
    for s in m.certified:
        smoothed = (
            f"smoothed {s.smoothed_accuracy:.3f}, " if s.smoothed_accuracy is not None else ""
        )
        parts.append(f"sigma={s.sigma:g}: {smoothed}ACR {s.acr:.3f}")
    return ", ".join(parts)


def result_line(m: RunMetrics) -> str:
    """The accuracies of a finished run, as printed after it."""
    return f"{accuracies(m)} ({m.train_seconds:.1f}s train)"


class Progress:
    def __init__(self, runs: list[Run], verbose: bool = True, stream=None) -> None:
        self.index = {r.id: i for i, r in enumerate(runs, 1)}
        self.total = len(runs)
        self.verbose = verbose
        self.out = stream or sys.stdout
        self.live = verbose and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.running: set[str] = set()
        self.finished_ids: set[str] = set()
        self.durations: list[float] = []
        self.started_at: dict[str, float] = {}

    def _line(self, run: Run, text: str, err: bool = False) -> None:
        if not self.verbose and not err:
            return
        self._clear()
        print(f"[{self.index.get(run.id, '?')}/{self.total}] {run.slug}: {text}",
              file=sys.stderr if err else self.out, flush=True)  # fmt: skip
        self._summary()

    def skipped(self, run: Run, why: str) -> None:
        self.finished_ids.add(run.id)
        self._line(run, why)

    def note(self, run: Run, text: str) -> None:
        self._line(run, text)

    def started(self, run: Run, text: str) -> None:
        self.running.add(run.id)
        self.started_at[run.id] = time.monotonic()
        self._line(run, text)

    def _end(self, run: Run) -> None:
        self.running.discard(run.id)
        self.finished_ids.add(run.id)
        if run.id in self.started_at:
            self.durations.append(time.monotonic() - self.started_at.pop(run.id))

    def finished(self, run: Run, metrics: RunMetrics | None) -> None:
        """A run done; its accuracies printed where they are known (not on torchrun's ranks but
        0, which print nothing)."""
        self._end(run)
        if metrics is not None:
            self._line(run, result_line(metrics))

    def failed(self, run: Run, why: str) -> None:
        self._end(run)
        self._line(run, f"FAILED: {why}", err=True)

    # -- the live summary ------------------------------------------------------------------
    def summary_text(self) -> str:
        done, running = len(self.finished_ids), len(self.running)
        left = self.total - done - running
        elapsed = time.monotonic() - self.t0
        eta = ""
        if self.durations and (left or running):
            per_run = sum(self.durations) / len(self.durations)
            slots = max(1, running)
            eta = f", about {_clock(per_run * (left + running) / slots)} left"
        return f"runs: {done} done, {running} running, {left} left; {_clock(elapsed)} elapsed{eta}"

    def _summary(self) -> None:
        if self.live:
            sys.stderr.write("\r\033[K" + self.summary_text())
            sys.stderr.flush()

    def _clear(self) -> None:
        if self.live:
            sys.stderr.write("\r\033[K")

    def tick(self) -> None:
        """Refresh the live line (a launcher calls this while it waits)."""
        self._summary()

    def close(self) -> None:
        if self.live:
            self._clear()
            sys.stderr.flush()
