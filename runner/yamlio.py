"""Safe YAML with source positions.

A SafeLoader subclass that rejects duplicate keys and non-standard tags (nothing is ever
constructed from a ``!!python/...`` tag), parses ``1e-3`` as a number (YAML 1.1 would keep it a
string), and records where every key and value sits so that validation errors can be reported
at ``file:line:column``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from runner.errors import Located, SpecError

Path_ = tuple[Any, ...]

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


@dataclass(frozen=True)
class Mark:
    source: str
    line: int  # 1-based
    col: int  # 1-based


MAX_NODES = 100_000  # a spec is small; aliases can expand a few lines exponentially
MAX_DEPTH = 50  # a spec nests about 5 levels; deeper input is an attack or a wrong file


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark | None) -> None:
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """SafeLoader + duplicate-key rejection + YAML 1.2-style floats + a nesting limit.

    PyYAML's composer recurses once per nesting level, so ``[[[[...]]]]`` thousands deep would
    end in a RecursionError; the limit turns it into a located error long before that.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Replace the float resolver so that 1e-3 and 1E5 are floats, as users expect.
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))

_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("map", "seq", "str", "int", "float", "bool", "null", "merge", "timestamp", "binary")
}


def _mark(source: str, m: yaml.Mark) -> Mark:
    return Mark(source, m.line + 1, m.column + 1)


def _error(source: str, node_mark: yaml.Mark | None, path: str, message: str) -> Located:
    line, col = (node_mark.line + 1, node_mark.column + 1) if node_mark else (1, 1)
    return Located(source, line, col, path, message)


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_NODES


def _check_tree(
    node: yaml.Node,
    source: str,
    path: Path_,
    problems: list[Located],
    budget: _Budget | None = None,
    active: set[int] | None = None,
) -> None:
    """Reject unknown tags, duplicate keys, alias bombs and self-referencing aliases before
    anything is constructed (``active`` holds the nodes on the path from the root)."""
    budget = budget or _Budget()
    active = set() if active is None else active
    _refuse_unbounded(node, source, path, budget, active)
    if node.tag not in _STANDARD_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        problems.append(
            _error(
                source,
                node.start_mark,
                _dotted(path),
                f"YAML tag '{tag}' is not allowed: specs are plain data, no tag is ever "
                "executed; remove the tag",
            )
        )
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        _check_mapping(node, source, path, problems, budget, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_tree(item, source, (*path, i), problems, budget, active)
    active.discard(id(node))


def _refuse_unbounded(
    node: yaml.Node, source: str, path: Path_, budget: _Budget, active: set[int]
) -> None:
    """A recursive alias, too deep a tree or too many nodes: a SpecError at once."""
    if id(node) in active:
        message = ("an alias refers to a node that contains it (a recursive structure); a spec "
                   "is a tree: write the value out")  # fmt: skip
        raise SpecError([_error(source, node.start_mark, _dotted(path), message)])
    if len(path) > MAX_DEPTH:
        raise SpecError(
            [_error(source, node.start_mark, _dotted(path[:3]) + "...", _deep_message())]
        )
    budget.left -= 1
    if budget.left < 0:
        message = (f"the spec expands to more than {MAX_NODES} YAML nodes (nested aliases?); "
                   "write it out without nested anchors")  # fmt: skip
        raise SpecError([_error(source, node.start_mark, _dotted(path), message)])


def _check_mapping(
    node: yaml.MappingNode,
    source: str,
    path: Path_,
    problems: list[Located],
    budget: _Budget,
    active: set[int],
) -> None:
    """Duplicate keys, then each key and value."""
    seen: dict[Any, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key is not None and key in seen:
            first = seen[key].start_mark.line + 1
            problems.append(
                _error(
                    source,
                    key_node.start_mark,
                    _dotted((*path, key)),
                    f"duplicate key '{key}' (first given on line {first}); keep one",
                )
            )
        elif key is not None:
            seen[key] = key_node
        _check_tree(key_node, source, path, problems, budget, active)
        _check_tree(value_node, source, (*path, key), problems, budget, active)


def _deep_message() -> str:
    return (
        f"the YAML nests more than {MAX_DEPTH} levels deep; a spec nests a few levels: "
        "flatten it (is this the right file?)"
    )


def _record_marks(node: yaml.Node, source: str, path: Path_, marks: dict[Path_, Mark]) -> None:
    """Map each key path to the position of its value (and of its key, under a 'key' suffix)."""
    marks[path] = _mark(source, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            marks[(*path, key, "\0key")] = _mark(source, key_node.start_mark)
            _record_marks(value_node, source, (*path, key), marks)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_marks(item, source, (*path, i), marks)


def load_yaml(text: str, source: str) -> tuple[Any, dict[Path_, Mark]]:
    """Parse one YAML document; return the data and a map from key paths to positions."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        problems: list[Located] = []
        _check_tree(node, source, (), problems)
        if problems:
            raise SpecError(problems)
        data = loader.construct_document(node)
    except _TooDeep as e:
        raise SpecError([_error(source, e.mark, "", _deep_message())]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise SpecError([_error(source, mark, "", f"YAML syntax error: {msg}")]) from None
    except yaml.YAMLError as e:  # pragma: no cover - unmarked errors are rare
        raise SpecError([Located(source, 1, 1, "", f"YAML error: {e}")]) from None
    finally:
        loader.dispose()
    marks: dict[Path_, Mark] = {}
    _record_marks(node, source, (), marks)
    return data, marks


def parse_scalar(text: str, source: str) -> Any:
    """Parse an override value (``3``, ``[0, 1]``, ``1e-3``, ``adam``) with the same rules."""
    data, _ = load_yaml(text, source)
    return data
