"""One registry pattern for datasets, models, recipes and attacks.

Entries name their implementation as a ``"module:attr"`` string, imported only when used, so
that ``advrun validate`` and ``advrun plan`` can list and check names without importing torch.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

from runner.errors import AdvrunError


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean 'x'?)' hint, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    return f"unknown {kind} '{name}'{did_you_mean(name, choices)}; choose one of: " + ", ".join(
        sorted(choices)
    )


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:attribute", imported lazily
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """Named entries of one kind ("dataset", "model", "recipe", "attack")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, summary: str = "", **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._entries[name] = Entry(name, target, summary, dict(meta))

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise AdvrunError(unknown_name_message(self.kind, name, self.names())) from None

    def load(self, name: str) -> Any:
        return self.get(name).load()
