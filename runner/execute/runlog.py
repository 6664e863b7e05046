"""A run's log file: timestamped lines appended and flushed as they happen."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


class RunLog:
    def __init__(self, path: Path, echo: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.echo = echo

    def __call__(self, message: str) -> None:
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        self._f.write(f"{stamp} {message}\n")
        self._f.flush()
        if self.echo:
            print(message)

    def close(self) -> None:
        self._f.close()
