"""Errors that the CLI turns into a message and an exit code, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1  # a run failed (diverged, crashed); its diagnosis is printed and stored
EXIT_USAGE = 2  # bad spec, bad override, bad command line, missing file
EXIT_GATE = 3  # the robustness gate failed


class AdvrunError(Exception):
    """A user-facing error: its message says what, where and what to do."""

    exit_code = EXIT_USAGE


class RunFailed(AdvrunError):
    """A run stopped with a diagnosis (e.g. a NaN loss)."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Located:
    """One spec problem at a source position."""

    source: str  # file path, or "override 'k=v'"
    line: int  # 1-based
    col: int  # 1-based
    path: str  # dotted key path, e.g. recipes.1.step_size
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.col}: {self.path or '<root>'}: {self.message}"


class SpecError(AdvrunError):
    """All problems found in a spec, reported together."""

    def __init__(self, problems: list[Located]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.source, p.line, p.col, p.path))
        n = len(self.problems)
        head = f"spec is invalid: {n} error{'s' if n != 1 else ''}"
        super().__init__("\n".join([head, *map(str, self.problems)]))


class SpecValueError(AdvrunError):
    """A spec value that only execution can judge (e.g. a layer of the built model); ``path`` is
    its key path, which the command places at file:line:col (:meth:`LoadedSpec.located`)."""

    def __init__(self, path: tuple[object, ...], message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{'.'.join(map(str, path))}: {message}")
