"""Run-store files are opened only by the store: no module of runner/ outside runner/store names
run.json, status.json, metrics.json, model_card.json or exports.json in its code (docstrings,
comments and help texts may), nor joins the store's file-name constants into a path."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import runner

NAMES = ("run.json", "status.json", "metrics.json", "model_card.json", "exports.json")
CONSTANTS = {"RUN_FILE", "STATUS_FILE", "METRICS_FILE", "MODEL_CARD_FILE", "EXPORTS_FILE"}
DOC_KEYWORDS = {"help", "description"}  # argparse help and pydantic field descriptions
ROOT = Path(runner.__file__).parent


def _documentation(tree: ast.AST) -> set[int]:
    """ids of the string nodes that document rather than do: docstrings and help texts."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg in DOC_KEYWORDS:
            skip.update(id(sub) for sub in ast.walk(node.value))
    return skip


def offenders(source: str, where: str) -> Iterator[str]:
    """``where:line: what`` for every use of a run-store file name in ``source``'s code."""
    tree = ast.parse(source)
    skip = _documentation(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            for name in NAMES:
                if name in node.value:
                    yield f"{where}:{node.lineno}: names {name!r}"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                name = getattr(side, "id", None) or getattr(side, "attr", None)
                if name in CONSTANTS:
                    yield f"{where}:{node.lineno}: joins {name} into a path"


def test_no_module_outside_the_store_opens_its_files_by_path():
    found = [
        hit
        for path in sorted(ROOT.rglob("*.py"))
        if "store" not in path.relative_to(ROOT).parts[:1]
        for hit in offenders(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT.parent)))
    ]
    assert not found, (
        "run-store files opened outside runner/store (read and write them through "
        "runner.store.Store / RunDir):\n" + "\n".join(found)
    )


def test_the_scan_finds_paths_and_spares_documentation():
    code = '''
"""Reads metrics.json."""
import argparse

def f(d):
    """The run.json of d."""
    p = argparse.ArgumentParser()
    p.add_argument("--x", help="a model_card.json")
    # status.json in a comment
    return read_json(d / "metrics.json"), d.glob("*/run.json"), d / METRICS_FILE
'''
    assert sorted(offenders(code, "m.py")) == [
        "m.py:10: joins METRICS_FILE into a path",
        "m.py:10: names 'metrics.json'",
        "m.py:10: names 'run.json'",
    ]
