"""Read a spec file, apply command-line overrides, validate, and place every error at file:line:col."""

from __future__ import annotations

import hashlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from runner.errors import AdvrunError, Located, SpecError
from runner.expr import ExprError
from runner.registry import did_you_mean
from runner.spec.attacks import ATTACK_SPECS
from runner.spec.base import MULTILINE_FIELDS, bad_character, describe_character, describe_value
from runner.spec.checks import check_spec
from runner.spec.core import Spec
from runner.spec.recipes import RECIPE_SPECS
from runner.yamlio import Mark, load_yaml, parse_scalar

MAX_SPEC_BYTES = 1 << 20  # a spec is a page of YAML; refuse megabytes (alias bombs, wrong file)
_KEY = "\0key"
_UNION_KINDS = {"recipes": ("recipe kind", RECIPE_SPECS), "attacks": ("attack kind", ATTACK_SPECS)}


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    text: str  # the file as written
    source: str
    overrides: tuple[str, ...]
    data: dict[str, Any]  # the raw mapping after overrides
    marks: dict = field(default_factory=dict, repr=False)  # key path -> position in the text

    @property
    def sha256(self) -> str:
        return spec_sha256(self.text, self.overrides)

    def located(self, path: tuple[Any, ...], message: str) -> SpecError:
        """A problem found after validation (e.g. by building the model) at file:line:col."""
        _, exists = _walk_loc(path, self.data)
        return SpecError([_located(list(path), exists, self.marks, self.source, message)])


def spec_sha256(text: str, overrides: list[str] | tuple[str, ...]) -> str:
    """The hash recorded with an experiment: the spec text as written plus its overrides."""
    h = hashlib.sha256(text.encode())
    for o in overrides:
        h.update(b"\0" + o.encode())
    return h.hexdigest()


def _split_key(key: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def apply_override(data: dict[str, Any], marks: dict, override: str) -> None:
    """Set ``a.b.0.c=value`` in data; its marks point at the override."""
    source = f"override '{override}'"
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise SpecError(
            [Located(source, 1, 1, key, "an override is dotted.key=value, e.g. recipes.0.epochs=3")]
        )
    value = parse_scalar(text, source)
    path = _split_key(key)
    cur: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(cur, dict):
            if part not in cur or cur[part] is None:
                cur[part] = [] if isinstance(nxt, int) else {}
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            cur = cur[part]
        else:
            where = ".".join(map(str, path[: i + 1]))
            raise SpecError(
                [
                    Located(
                        source, 1, 1, key, f"'{where}' does not exist in the spec; check the index"
                    )
                ]
            )
    last = path[-1]
    if isinstance(cur, dict) or isinstance(cur, list) and isinstance(last, int) and last < len(cur):
        cur[last] = value
    else:
        raise SpecError(
            [Located(source, 1, 1, key, f"'{key}' does not exist in the spec; check the index")]
        )
    col = len(key) + 2
    prefix = tuple(path)
    for k in [k for k in marks if k[: len(prefix)] == prefix]:
        del marks[k]
    marks[prefix] = Mark(source, 1, col)
    marks[(*prefix, _KEY)] = Mark(source, 1, 1)


def _walk_loc(loc: tuple[Any, ...], data: Any) -> tuple[list[Any], bool]:
    """Turn a pydantic loc into a path through the data (dropping union tags and type names)."""
    path: list[Any] = []
    cur = data
    exists = True
    for i, part in enumerate(loc):
        if (
            isinstance(cur, dict)
            and part in cur
            or isinstance(cur, list)
            and isinstance(part, int)
            and 0 <= part < len(cur)
        ):
            path.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and cur.get("kind") == part:
            continue  # the discriminator tag pydantic inserts for tagged unions
        elif isinstance(part, str) and i == len(loc) - 1 and isinstance(cur, dict):
            path.append(part)  # a missing key
            exists = False
        else:
            continue  # type names such as 'function-plain[...]'
    return path, exists


def _model_fields(path: list[Any], data: Any) -> list[str] | None:
    """The keys allowed at the mapping that holds path[-1] (for did-you-mean on unknown keys)."""
    tp: Any = Spec
    cur = data
    for part in path[:-1]:
        if isinstance(cur, dict) and isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp, cur = field.annotation, cur[part]
        elif isinstance(cur, list):
            tp, cur = typing.get_args(tp)[0] if typing.get_args(tp) else None, cur[part]
        while typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and isinstance(cur, dict):
            members = [
                a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            kinds = [
                m
                for m in members
                if "kind" in m.model_fields
                and m.model_fields["kind"].annotation == typing.Literal[cur.get("kind")]
            ]
            tp = kinds[0] if kinds else (members[0] if len(members) == 1 else None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return None


def _message(err: dict[str, Any], path: list[Any], data: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _model_fields(path, data) or []
        if path[-1] in ("defense", "defence"):  # a defense without the scenario it is measured on
            return (
                f"'{path[-1]}' outside the poisoning: block: a poisoning defense is measured "
                "against a poisoning scenario; set it there, e.g. poisoning: {trigger: pattern, "
                "target: 0, fraction: 0.05, defense: spectral_signatures}"
            )
        return f"unknown key '{path[-1]}'{did_you_mean(str(path[-1]), allowed)}; allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        return f"required key '{path[-1]}' is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        what, table = _UNION_KINDS.get(path[0] if path else "", ("kind", {}))
        tag = err.get("ctx", {}).get("tag")
        if tag is None:
            return f"missing 'kind'; choose one of: {', '.join(table)}"
        return f"unknown {what} '{tag}'{did_you_mean(str(tag), list(table))}; choose one of: {', '.join(table)}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe_value(err.get('input'))}"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


# strict types (runner.spec.base.StrictModel): a wrong type is named, never coerced
_EXPECTED = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _locate(path: list[Any], exists: bool, marks: dict, source: str, key: bool) -> Mark:
    if key and (*path, _KEY) in marks:
        return marks[(*path, _KEY)]
    probe = tuple(path) if exists else tuple(path[:-1])
    while probe not in marks and probe:
        probe = probe[:-1]
    return marks.get(probe, Mark(source, 1, 1))


def _located(
    path: list[Any], exists: bool, marks: dict, source: str, message: str, key: bool = False
) -> Located:
    m = _locate(path, exists, marks, source, key)
    return Located(m.source, m.line, m.col, ".".join(map(str, path)), message)


def _text_problems(data: Any, marks: dict, source: str) -> list[Located]:
    """Strings (keys and values) holding control characters, separators or bidi overrides."""
    problems: list[Located] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and (ch := bad_character(k)):
                    problems.append(_text_problem(path + (k,), ch, marks, source, key=True))
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))
        elif isinstance(node, str):
            multiline = path in MULTILINE_FIELDS
            if ch := bad_character(node, multiline):
                problems.append(_text_problem(path, ch, marks, source, multiline=multiline))

    walk(data, ())
    return problems


def _text_problem(
    path: tuple[Any, ...], ch: str, marks: dict, source: str, key: bool = False,
    multiline: bool = False,
) -> Located:  # fmt: skip
    what = "a key" if key else "the value"
    allowed = "newlines and tabs are allowed, " if multiline else ""
    message = (
        f"{what} contains {describe_character(ch)}: {allowed}control characters, line separators "
        "and bidi overrides are not (they corrupt logs, terminals and file names); remove it"
    )
    return _located(list(path), True, marks, source, message, key=key)


_TYPE_NAMES = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def validate_data(data: Any, marks: dict, source: str) -> Spec:
    if not isinstance(data, dict):
        got = _TYPE_NAMES.get(type(data), type(data).__name__)
        m = marks.get((), Mark(source, 1, 1))
        raise SpecError(
            [
                Located(
                    m.source,
                    m.line,
                    m.col,
                    "",
                    f"the top level is {got}, but a spec is a YAML mapping (name:, threat:, "
                    "models:, recipes:, ...)",
                )
            ]
        )
    text_problems = _text_problems(data, marks, source)
    if text_problems:
        raise SpecError(text_problems)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            path, exists = _walk_loc(err["loc"], data)
            if err["type"] == "union_tag_invalid":
                path.append("kind")  # point at the bad kind, not at its whole item
            problems.append(
                _located(
                    path,
                    exists,
                    marks,
                    source,
                    _message(err, path, data),
                    key=err["type"] == "extra_forbidden",
                )
            )
        raise SpecError(problems) from None
    try:
        found = check_spec(spec)
    except ExprError as e:  # an expression that overflows only with the real eps
        raise SpecError([Located(source, 1, 1, "", str(e))]) from None
    problems = [_located(list(p), True, marks, source, msg) for p, msg in found]
    if problems:
        raise SpecError(problems)
    return spec


def read_spec_text(path: str | Path) -> str:
    """The spec file as text: at most MAX_SPEC_BYTES of valid UTF-8, or a located error."""
    p = Path(path)
    source = str(path)
    try:
        with p.open("rb") as f:  # bounded read: /dev/zero or a FIFO has no size to check first
            raw = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise AdvrunError(f"{source}: no such spec file; copy one from specs/ to start") from None
    except IsADirectoryError:
        raise AdvrunError(f"{source}: is a directory, not a spec file; pass a .yaml file") from None
    except OSError as e:
        raise AdvrunError(
            f"{source}: cannot read the spec ({e.strerror or e}); check its permissions"
        ) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise AdvrunError(
            f"{source}: more than {MAX_SPEC_BYTES} bytes (1 MiB), the limit for a spec; a spec is "
            "a page of YAML: is this the right file?"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(
            [
                Located(
                    source,
                    line,
                    col,
                    "",
                    f"byte 0x{raw[e.start]:02x} is not valid UTF-8; save the spec as UTF-8 text",
                )
            ]
        ) from None


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """Load, override and validate a spec; raise :class:`SpecError` with every problem found."""
    source = str(path)
    text = read_spec_text(path)
    data, marks = load_yaml(text, source)
    if data is None:
        if not overrides:
            raise SpecError(
                [
                    Located(
                        source,
                        1,
                        1,
                        "",
                        "the spec is empty; start from specs/quickstart.yaml (name:, threat:, "
                        "models:, recipes:)",
                    )
                ]
            )
        data = {}
    if isinstance(data, dict):
        for o in overrides:
            apply_override(data, marks, o)
    spec = validate_data(data, marks, source)
    return LoadedSpec(
        spec=spec, text=text, source=source, overrides=tuple(overrides), data=data, marks=marks
    )
