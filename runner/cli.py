"""The ``advrun`` command line: one small module per command under :mod:`runner.commands`.

Command modules import nothing heavy at import time, so ``advrun validate`` and ``advrun plan``
answer without loading torch, ART or optuna.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from runner.errors import EXIT_FAILED, EXIT_USAGE, AdvrunError

# name -> (module, one-line help), in the order of a session: check, run, audit, tune, read, ship.
# Each command's page is docs/commands/<name>.md.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": (
        "runner.commands.validate",
        "check a spec: every error at file:line:col, no compute",
    ),
    "plan": ("runner.commands.plan", "list the runs a spec expands into, with their status"),
    "run": ("runner.commands.run", "train, attack and store every run of a spec (resumable)"),
    "eval": ("runner.commands.eval", "audit an existing model against the spec's attack suite"),
    "tune": ("runner.commands.tune", "run or continue the spec's Optuna study (tune: block)"),
    "report": ("runner.commands.report", "one self-contained HTML report of output directories"),
    "export-adv": (
        "runner.commands.export_adv",
        "write a run's adversarial examples as npz + hashes",
    ),
    "track": ("runner.commands.track", "log to MLflow what an output dir has not logged yet"),
    "schema": ("runner.commands.schema", "print the spec's JSON Schema (for editors)"),
}
DOCS = "docs/index.md"  # the documentation site's home, readable on GitHub; `make docs-serve`


def _command_map() -> str:
    """The top-level help: what advrun is, then one line per command."""
    lines = [
        "Adversarial-training experiments from one YAML spec: validate it, plan and run it (train,",
        "attack, store), then read the report. First steps: `make demo` (specs/quickstart.yaml).",
        "",
        "commands (advrun COMMAND --help for its options):",
        *(f"  {name:<12}{help_}" for name, (_, help_) in COMMANDS.items()),
    ]
    return "\n".join(lines)


EPILOG = f"""\
exit codes: 0 success, 1 a run failed (diagnosis printed and stored), 2 bad input (spec, data,
checkpoint, usage) or environment (disk full, unwritable output), 3 the robustness gate failed.

read more: {DOCS} (the documentation site; `make docs-serve` serves it locally);
each command has its page, docs/commands/COMMAND.md"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: a message and exit 2, as for specs
        self.print_usage(sys.stderr)
        print(f"advrun: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that command's module is imported (fast start-up)."""
    parser = _Parser(
        prog="advrun",
        usage="%(prog)s [-h] [--debug] COMMAND ...",
        description=_command_map(),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        prog="advrun",  # sub-command usage: "advrun run ...", not the top-level usage line
        parser_class=_Parser,
        help=argparse.SUPPRESS,  # listed by _command_map, one line each
    )
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=f"read more: docs/commands/{name}.md",
        )
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        if only is not None and name != only:
            continue
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    # KEY=VALUE overrides may follow options (`run spec.yaml -o out seeds=[0]`): argparse stops
    # collecting a positional list at the first option, so gather the leftovers here.
    args, extra = parser.parse_known_args(argv)
    unknown = [
        a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")
    ]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._module.run(args) or 0)
    except AdvrunError as e:
        print(f"advrun {args.command}: {e}" if "\n" not in str(e) else str(e), file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the environment (disk full, permissions, a vanished file), not a bug
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(
            f"advrun {args.command}: {e.strerror or e}{where}; check the path, its permissions "
            "and free space, then rerun (finished epochs and runs are kept)",
            file=sys.stderr,
        )
        if args.debug:
            traceback.print_exc()
        return EXIT_USAGE
    except MemoryError:
        print(
            f"advrun {args.command}: out of memory; use a smaller data.limit, eval.n or "
            "batch_size, or a machine with more memory",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "advrun: interrupted; completed epochs and runs are kept, run again to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # an advrun bug: say so plainly, full detail only on request
        if args.debug:
            traceback.print_exc()
        else:
            print(
                f"advrun {args.command}: internal error: {type(e).__name__}: {e}\n"
                "rerun with --debug for the traceback and report it",
                file=sys.stderr,
            )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
