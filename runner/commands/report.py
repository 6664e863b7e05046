"""``advrun report DIR [DIR ...] [-o FILE]``: one self-contained HTML report of experiments."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="output directories of advrun run")
    p.add_argument(
        "-o",
        "--output",
        help="the HTML file (default: DIR/report.html for one directory, ./report.html for several)",
    )


def run(args: argparse.Namespace) -> int:
    import contextlib

    from runner.execute.claim import locked
    from runner.report.experiment import LOCK
    from runner.report.render import write_report
    from runner.store import MODEL_CARD_FILE

    out = args.output or (
        Path(args.dirs[0]) / "report.html" if len(args.dirs) == 1 else "report.html"
    )
    with contextlib.ExitStack() as held:  # results.json and model cards are rewritten in each
        for d in sorted({str(Path(d).resolve()) for d in args.dirs if Path(d).is_dir()}):
            held.enter_context(locked(Path(d) / LOCK))
        path = write_report(args.dirs, out)
    print(f"report: {path}")
    for d in args.dirs:
        print(
            f"results: {Path(d) / 'results.json'} (model cards in "
            f"{Path(d) / 'runs'}/*/{MODEL_CARD_FILE})"
        )
    return 0
