"""MkDocs hook: pages generated from the code at build time, so they cannot drift from it.

- ``reference/spec.md``: the spec reference, rendered from the committed JSON Schema
  (``specs/advrun.schema.json``; ``tests/unit/test_cli_pure.py`` keeps that file equal to
  ``advrun schema``). The committed page is a placeholder for readers of the repository; the
  site's page is generated over it.
- ``<!-- advrun-help COMMAND -->`` in a page becomes ``advrun COMMAND --help`` as argparse prints
  it (``<!-- advrun-help -->``: the top-level help), so every page shows the real flags.

``render_spec_reference`` is pure (a dict in, Markdown out) and tested in
``tests/unit/test_docs.py``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "specs" / "advrun.schema.json"
REFERENCE_PAGE = "reference/spec.md"
# the order a spec is usually written in; any other top-level key follows alphabetically
TOP_ORDER = [
    "name",
    "description",
    "seeds",
    "device",
    "deterministic",
    "threads",
    "data",
    "threat",
    "models",
    "recipes",
    "attacks",
    "eval",
    "output",
    "tune",
    "gate",
    "poisoning",
    "tracking",
]
_HELP = re.compile(r"<!-- advrun-help(?: ([a-z-]+))? -->")
_CONSTRAINTS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("pattern", "matches `{}`"),
    ("minItems", "items ≥ {}"),
    ("maxItems", "items ≤ {}"),
    ("minProperties", "keys ≥ {}"),
)


# ---------------------------------------------------------------- the spec reference (pure)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _anchor(name: str) -> str:
    return name.lower()


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(node: dict[str, Any]) -> str:
    """A short, linked type: ``number | string``, ``list of [PGDAttack](#pgdattack)``..."""
    if "$ref" in node:
        name = _ref_name(node["$ref"])
        return f"[{name}](#{_anchor(name)})"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " | ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            kinds = _discriminated(node)
            if kinds:
                return "one of the kinds " + ", ".join(
                    f"[`{k}`](#{_anchor(d)})" for k, d in sorted(kinds.items())
                )
            alts = [_type(n) for n in node[key]]
            return " | ".join(dict.fromkeys(" | ".join(alts).split(" | ")))
    typ = node.get("type")
    if typ == "array":
        if "prefixItems" in node:
            return "[" + ", ".join(_type(n) for n in node["prefixItems"]) + "]"
        item = _type(node["items"]) if "items" in node else "any"
        return f"list of ({item})" if " | " in item else f"list of {item}"
    if typ == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return "map of string → " + _type(extra)
        return "object"
    if isinstance(typ, list):
        return " | ".join(typ)
    return typ or "any"


def _discriminated(node: dict[str, Any]) -> dict[str, str]:
    """``kind value -> def name`` of a discriminated union (pydantic writes its mapping)."""
    disc = node.get("discriminator") or {}
    return {k: _ref_name(v) for k, v in disc.get("mapping", {}).items()}


def _constraints(node: dict[str, Any]) -> list[str]:
    out = [fmt.format(node[key]) for key, fmt in _CONSTRAINTS if key in node]
    for key in ("anyOf", "oneOf"):  # an optional number keeps its bounds inside anyOf
        for alt in node.get(key, []):
            out += [c for c in _constraints(alt) if c not in out]
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        out += [f"each {c}" for c in _constraints(node["items"])]
    return out


def _field_row(name: str, node: dict[str, Any], required: bool) -> str:
    if required:
        default = "**required**"
    elif "default" in node:
        default = f"`{json.dumps(node['default'], ensure_ascii=False)}`"
    else:
        default = ""
    desc = node.get("description", "")
    limits = _constraints(node)
    if limits:
        desc = f"{desc} ({'; '.join(limits)})" if desc else "; ".join(limits)
    return f"| `{name}` | {_cell(_type(node))} | {_cell(default)} | {_cell(desc)} |"


def _fields_table(model: dict[str, Any], order: list[str] | None = None) -> list[str]:
    props = model.get("properties", {})
    if not props:
        return ["No fields."]
    names = order or sorted(props)
    required = set(model.get("required", []))
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    rows += [_field_row(n, props[n], n in required) for n in names]
    if model.get("additionalProperties") is False:
        rows += ["", "Any other key is an error (with a did-you-mean)."]
    return rows


def _refs(node: Any) -> Iterator[str]:
    """Every def a node names, in document order."""
    if isinstance(node, dict):
        if "$ref" in node:
            yield _ref_name(node["$ref"])
        for key, value in node.items():
            if key != "discriminator":
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _top_order(props: dict[str, Any]) -> list[str]:
    known = [k for k in TOP_ORDER if k in props]
    return known + sorted(k for k in props if k not in known)


def render_spec_reference(schema: dict[str, Any]) -> str:
    """The spec reference page: the top-level keys, then every model, in reading order."""
    defs = schema.get("$defs", {})
    props = schema.get("properties", {})
    order = _top_order(props)
    kinds: dict[str, str] = {}  # def name -> its kind value in a discriminated union
    for node in _walk(schema):
        kinds.update({d: k for k, d in _discriminated(node).items()})
    lines = [
        "# Spec reference",
        "",
        "<!-- generated by docs/hooks/advrun_docs.py from specs/advrun.schema.json; "
        "do not edit -->",
        "",
        "Every key of a spec, generated from the spec's JSON Schema (`specs/advrun.schema.json`, "
        "which `advrun schema` prints and a test keeps equal to the code) each time the site is "
        "built. What the keys mean in practice (units, expressions such as `eps/4`, sweeps, "
        "limits) is in [Writing a spec](../spec.md); rules that span several keys are checked "
        "by `advrun validate` too, each error at `file:line:col`.",
        "",
        f"## Top level: {schema.get('title', 'Spec')}",
        "",
        _cell(schema.get("description", "")),
        "",
        *_fields_table(schema, order),
        "",
    ]
    seen: list[str] = []
    for name in _refs([props[k] for k in order]):
        _visit(name, defs, seen)
    seen += sorted(d for d in defs if d not in seen)  # unreachable defs still get a section
    for name in seen:
        model = defs[name]
        title = f"{name} (`kind: {kinds[name]}`)" if name in kinds else name
        lines += [f"## {title} {{#{_anchor(name)}}}", ""]
        if model.get("description"):
            lines += [_cell(model["description"]).replace("``", "`"), ""]
        if model.get("type", "object") == "object" and "properties" in model:
            lines += [*_fields_table(model), ""]
        else:
            lines += [f"Type: {_type(model)}", ""]
    return "\n".join(lines)


def _visit(name: str, defs: dict[str, Any], seen: list[str]) -> None:
    if name in seen or name not in defs:
        return
    seen.append(name)
    for child in _refs(defs[name]):
        _visit(child, defs, seen)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# ---------------------------------------------------------------- command help


def command_help(command: str | None) -> str:
    """``advrun [COMMAND] --help`` exactly as the CLI prints it, at a fixed width of 100."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from runner.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build_parser(command)
        if command is None:
            return parser.format_help()
        sub = next(a for a in parser._actions if a.dest == "command")
        return sub.choices[command].format_help()  # type: ignore[index]
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _help_block(match: re.Match[str]) -> str:
    command = match.group(1)
    return f"```text\n$ advrun {command + ' ' if command else ''}--help\n{command_help(command)}```"


# ---------------------------------------------------------------- MkDocs events


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The spec reference replaces its committed placeholder; help markers become help."""
    if page.file.src_uri == REFERENCE_PAGE:
        return render_spec_reference(json.loads(SCHEMA.read_text(encoding="utf-8")))
    return _HELP.sub(_help_block, markdown)
