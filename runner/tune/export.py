"""``advrun tune SPEC --export best.yaml``: the spec as written, with the best parameters filled in.

Values are spliced into the YAML text at the positions the parser reports, so comments and layout
survive; the result is parsed back and must equal the intended data (else it is written as plain
YAML, without comments, and the caller is told), and it is validated like any spec.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from runner.errors import AdvrunError, SpecError
from runner.fsio import write_text
from runner.spec.load import LoadedSpec, validate_data
from runner.tune.build import apply_edits
from runner.yamlio import load_yaml, parse_scalar

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@/-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~"}


def flow(value: Any) -> str:
    """A value as flow-style YAML that advrun's loader reads back exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping form; 1e-05 is a float to advrun's loader
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return (
            value if _PLAIN.match(value) and value.lower() not in _RESERVED else json.dumps(value)
        )
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    raise AdvrunError(f"cannot write {value!r} into a spec")


def _line_end_after(text: str, node: yaml.Node) -> int:
    """The end of the line holding the last character of ``node`` (after any comment)."""
    i = node.end_mark.index - 1
    while i > 0 and text[i] in " \n":
        i -= 1
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _insert_key(text: str, node: yaml.MappingNode, key: Any, val: str) -> str:
    if node.flow_style:
        close = text.rindex("}", 0, node.end_mark.index)
        sep = ", " if node.value else ""
        return text[:close] + f"{sep}{key}: {val}" + text[close:]
    col = node.value[0][0].start_mark.column
    at = _line_end_after(text, node.value[-1][1])
    return text[:at] + "\n" + " " * col + f"{key}: {val}" + text[at:]


def _append_item(text: str, node: yaml.SequenceNode, val: str) -> str:
    if node.flow_style:
        close = text.rindex("]", 0, node.end_mark.index)
        return text[:close] + (", " if node.value else "") + val + text[close:]
    first = node.value[0].start_mark.index
    dash = text.rindex("-", 0, first)
    col = dash - (text.rfind("\n", 0, dash) + 1)
    at = _line_end_after(text, node.value[-1])
    return text[:at] + "\n" + " " * col + "- " + val + text[at:]


def set_in_text(text: str, path: tuple[Any, ...], value: Any) -> str:
    """Write ``value`` at ``path`` in the YAML text, creating missing mappings inline."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for i, key in enumerate(path):
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == str(key)), None)
            if found is None:
                val = flow(value)
                for k in reversed(path[i + 1 :]):
                    val = f"{{{k}: {val}}}"
                return _insert_key(text, node, key, val)
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key == len(node.value) and i == len(path) - 1:
                return _append_item(text, node, flow(value))
            node = node.value[key]
        else:
            raise ValueError(f"cannot follow {path} in the text")
    if not isinstance(node, yaml.ScalarNode) and not node.flow_style:
        raise ValueError("block collections are replaced by a plain dump")
    return text[: node.start_mark.index] + flow(value) + text[node.end_mark.index :]


def _with_header(text: str, header: str) -> str:
    lines = text.splitlines(keepends=True)
    k = 0
    while k < len(lines) and lines[k].lstrip().startswith("#"):
        k += 1
    return (
        "".join(lines[:k]) + "".join(f"# {h}\n" for h in header.splitlines()) + "".join(lines[k:])
    )


def override_edits(loaded: LoadedSpec) -> list[tuple[tuple[Any, ...], Any]]:
    """The command line's KEY=VALUE overrides as edits (so the export measures the same runs)."""
    out = []
    for o in loaded.overrides:
        key, _, val = o.partition("=")
        path = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
        out.append((path, parse_scalar(val, f"override '{o}'")))
    return out


def export_spec(
    loaded: LoadedSpec, changes: list[tuple[tuple[Any, ...], Any]], header: str, dest: Path
) -> bool:
    """Write the exported spec; return True if comments and layout were kept."""
    original, _ = load_yaml(loaded.text, loaded.source)
    changes = override_edits(loaded) + changes
    want = apply_edits(original or {}, changes)
    kept = True
    try:
        text = loaded.text
        for path, value in changes:
            text = set_in_text(text, path, value)
        text = _with_header(text, header)
        if load_yaml(text, str(dest))[0] != want:
            raise ValueError("the edited text does not read back as intended")
    except (ValueError, yaml.YAMLError, IndexError, SpecError):
        kept = False
        text = _with_header(yaml.safe_dump(want, sort_keys=False, allow_unicode=True), header)
    data, marks = load_yaml(text, str(dest))
    validate_data(data, marks, str(dest))  # what advrun validate will say: must be valid
    write_text(dest, text)
    return kept
