"""What ``advrun run`` (and ``advrun eval``) do after the runs: write the report, check the gate."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from runner.errors import EXIT_GATE, EXIT_OK, AdvrunError


def write_default_report(output_dir: str | Path, midway=None) -> Path | None:
    """``<out>/report.html`` (+ results.json, model cards); a problem is reported, not raised:
    the runs are stored either way and ``advrun report`` can be rerun."""
    from runner.report.render import write_report

    out = Path(output_dir) / "report.html"
    try:
        return write_report([output_dir], out, midway)
    except AdvrunError as e:
        print(f"report not written: {e}", file=sys.stderr)
    except Exception as e:  # a report bug must not hide the stored results
        print(
            f"report not written: internal error {type(e).__name__}: {e}; "
            f"rerun `advrun --debug report {output_dir}` for the traceback",
            file=sys.stderr,
        )
    return None


def gate_exit_code(spec, output_dir: str | Path, run_ids: Iterable[str] | None = None) -> int:
    """Print the gate's verdict; EXIT_GATE when it fails, EXIT_OK otherwise (or without gate)."""
    from runner.report.baseline import with_stored_baseline
    from runner.report.gate import check_gate

    if getattr(with_stored_baseline(spec, Path(output_dir)), "gate", None) is None:
        return EXIT_OK
    ok, messages = check_gate(spec, output_dir, run_ids)
    print(f"gate: {'passed' if ok else 'FAILED'}")
    for m in messages:
        print(f"  {m}")
    return EXIT_OK if ok else EXIT_GATE
