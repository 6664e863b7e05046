"""``advrun validate SPEC``: check a spec without running anything."""

from __future__ import annotations

import argparse

from runner.commands.common import add_spec_arguments, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)


def run(args: argparse.Namespace) -> int:
    loaded, plan, store = load(args)
    print(
        f"{args.spec}: valid: {len(plan.runs)} run(s), {len(loaded.spec.attacks)} attack(s), output {store.root}"
    )
    return 0
