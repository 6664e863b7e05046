"""Options of an execution, shared by every launcher."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Options:
    device: str = "auto"
    allow_import: list[str] = field(default_factory=list)
    force: bool = False
    verbose: bool = True
    # integrations' settings as plain data (e.g. the spec's tracking block merged with the
    # command line), so the hooks can be rebuilt in a spawned job, a Ray task or a torchrun rank
    tracking: dict[str, Any] | None = None

    @property
    def bars(self) -> bool:  # progress bars only on a terminal
        return self.verbose and sys.stderr.isatty()
