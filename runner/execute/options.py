"""Options of an execution, shared by every launcher."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class Options:
    device: str = "auto"
    allow_import: list[str] = field(default_factory=list)
    force: bool = False
    verbose: bool = True

    @property
    def bars(self) -> bool:  # progress bars only on a terminal
        return self.verbose and sys.stderr.isatty()
