"""``advrun schema``: the JSON Schema of the spec, for editors (yaml-language-server)."""

from __future__ import annotations

import argparse
import json

from runner.spec import Spec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write to this file instead of stdout")


def schema_text() -> str:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "advrun spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def run(args: argparse.Namespace) -> int:
    text = schema_text()
    if args.output:
        from runner.fsio import write_text

        write_text(args.output, text)
    else:
        print(text, end="")
    return 0
