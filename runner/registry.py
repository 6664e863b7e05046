"""One registry pattern for datasets, models, recipes and attacks.

Entries name their plug-in class as a ``"module:attr"`` string, imported only when used, so that
the catalog can list every name without importing anything. Plug-in modules import no torch at
module level: ``advrun validate`` and ``advrun plan`` load attack, recipe and data set classes to
read their spec models and checks.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise AdvrunError(
                f"plug-in '{self.name}' names '{self.target}', which cannot be loaded ({e}); "
                "check its catalog line"
            ) from e


class Registry:
    """Named entries of one kind ("dataset", "model", "recipe", "attack").

    Listeners (:meth:`subscribe`) hear of every change, so that models built over the entries
    (the root spec's recipe and attack unions) follow a plug-in registered at run time.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._listeners: list[Callable[[], None]] = []

    def register(self, name: str, target: str, summary: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        if ":" not in target:
            raise ValueError(f"{self.kind} '{name}': target '{target}' is not 'module:attr'")
        self._entries[name] = Entry(name, target, summary)
        try:
            self._changed()
        except Exception:  # a listener refused the plug-in: leave the registry as it was
            del self._entries[name]
            self._changed()
            raise

    def unregister(self, name: str) -> None:
        """Remove an entry (a plug-in registered at run time, e.g. by a test)."""
        self.get(name)
        del self._entries[name]
        self._changed()

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

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
        """The plug-in class (or factory) registered as ``name``, imported now."""
        return self.get(name).load()

    def config(self, name: str) -> Any:
        """The spec model of plug-in ``name``: its class attribute ``config``."""
        return self.load(name).config

    def configs(self) -> Configs:
        """name -> spec model of every entry, a live view loaded on access."""
        return Configs(self)


class Configs(Mapping[str, Any]):
    """The spec models of a registry's plug-ins by name; follows later registrations."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __getitem__(self, name: str) -> Any:
        if name not in self._registry:
            raise KeyError(name)
        return self._registry.config(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry.names())
