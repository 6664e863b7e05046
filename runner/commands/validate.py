"""``advrun validate SPEC``: check a spec without running anything."""

from __future__ import annotations

import argparse
import sys

from runner.commands.common import add_spec_arguments, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)


def run(args: argparse.Namespace) -> int:
    loaded, plan, store = load(args)
    print(
        f"{args.spec}: valid: {len(plan.runs)} run(s), {len(loaded.spec.attacks)} attack(s), output {store.root}"
    )
    from runner.spec.certify import notes

    for note in notes(loaded.spec):  # true of a valid spec, worth knowing
        print(f"note: {note}", file=sys.stderr)
    return 0
