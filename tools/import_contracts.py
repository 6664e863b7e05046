"""import-linter contract types of our own (``.importlinter`` names them in ``contract_types``).

``acyclic_modules``: no import cycle between any modules under the root packages, a package's
``__init__`` included. The built-in ``acyclic_siblings`` checks the children of every package,
each squashed with its descendants, so it cannot see a package's ``__init__`` and one of its own
modules importing each other; this one looks at every module on its own.
"""

from __future__ import annotations

import grimp
from importlinter import Contract, ContractCheck, fields, output
from importlinter.application.contract_utils import AlertLevel, remove_ignored_imports_and_report


class AcyclicModulesContract(Contract):
    type_name = "acyclic_modules"

    modules = fields.ListField(subfield=fields.StringField())  # the roots whose modules count
    ignore_imports = fields.SetField(subfield=fields.ImportExpressionField(), required=False)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        ignored = self.ignore_imports  # type: ignore[attr-defined]
        removal = remove_ignored_imports_and_report(graph, ignored, AlertLevel.ERROR)
        roots = tuple(str(m) for m in self.modules)  # type: ignore[attr-defined]
        inside = {m for m in graph.modules if m.split(".")[0] in roots}
        cycles = [_shortest_cycle(graph, c) for c in _strongly_connected(graph, inside)]
        return ContractCheck(
            kept=not cycles,
            warnings=list(removal.warnings),
            metadata={"cycles": cycles},
            ignored_import_count=removal.ignored_import_count,
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error("Import cycle: " + " -> ".join(cycle))
            output.new_line()


def _strongly_connected(graph: grimp.ImportGraph, nodes: set[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start) & nodes)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append(
                        (nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt) & nodes)))
                    )
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _shortest_cycle(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    """One cycle through the first module of ``component``, as a list of modules."""
    first = component[0]
    best: tuple[str, ...] | None = None
    for imported in sorted(graph.find_modules_directly_imported_by(first) & set(component)):
        back = graph.find_shortest_chain(importer=imported, imported=first)
        if back is not None and (best is None or len(back) < len(best)):
            best = back
    return [first, *(best or component[1:])]
