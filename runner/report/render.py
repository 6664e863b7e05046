"""Render the report: Jinja2 (autoescape on) over templates shipped with the package.

Templates live in the repository's ``templates/``; the wheel carries them as ``runner/templates``
(pyproject force-include). They are looked up in the installed package first, then in the
checkout (editable installs), so ``advrun report`` works from a wheel and from a clone.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import jinja2

from runner.errors import AdvrunError
from runner.fsio import contained, write_json, write_text
from runner.store import RunDir

TEMPLATE = "report.html.j2"


def template_dir():
    """The templates folder: ``runner/templates`` when installed, else the checkout's."""
    packaged = importlib.resources.files("runner") / "templates"
    if packaged.is_dir() and (packaged / TEMPLATE).is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "templates"
    if (checkout / TEMPLATE).is_file():
        return checkout
    raise AdvrunError(
        f"report templates not found (looked in {packaged} and {checkout}); reinstall advrun"
    )


def _pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * float(v):.{digits}f}%"


def _pts(v: Any) -> str:
    return "" if v is None else f"± {100 * float(v):.1f}"


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    return f"{float(v):.{digits}g}" if isinstance(v, float) else str(v)


def _seconds(v: Any) -> str:
    if v is None:
        return "–"
    v = float(v)
    if v < 60:
        return f"{v:.1f} s"
    if v < 3600:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.2f} h"


def _passes(v: Any) -> str:
    if v is None:
        return "–"
    v = float(v)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.0f}"


def _pretty(v: Any) -> str:
    return json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def environment() -> jinja2.Environment:
    root = template_dir()

    def load(name: str) -> str | None:
        path = root / name
        return path.read_text(encoding="utf-8") if path.is_file() else None

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=True,  # every name and string in the report is user text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=_pct, pts=_pts, num=_num, seconds=_seconds, passes=_passes, pretty=_pretty
    )
    return env


def render_html(report: dict[str, Any]) -> str:
    from runner.report.figures import figures

    env = environment()
    return env.get_template(TEMPLATE).render(r=report, fig=figures(report))


def write_companions(report: dict[str, Any]) -> list[Path]:
    """results.json in each experiment's directory and a model card in each evaluated run's."""
    from runner.report.cards import model_card

    written = []
    for exp in report["experiments"]:
        root = Path(exp["dir"])
        single = {**report, "experiments": [exp], "comparison": {**report["comparison"]}}
        single["comparison"]["columns"] = exp["columns"]
        write_json(root / "results.json", single)
        written.append(root / "results.json")
        for run in exp["runs"]:
            if not run["dir"]:
                continue
            d = RunDir(contained(root / "runs", run["dir"]))
            if run["results"]:
                d.write_model_card(model_card(exp, run))
                written.append(d.model_card_path)
            else:  # a card must describe current results: none for a failed or pending run
                d.remove_model_card()
    return written


def write_report(dirs: list[str | Path], output: str | Path, midway=None) -> Path:
    """Build, render and write the HTML report plus its machine-readable companions."""
    from runner.report.build import build

    report = build(dirs)
    write_companions(report)
    if midway is not None:  # a test's kill point between the companions and the HTML
        midway()
    html = render_html(report)
    out = Path(output)
    write_text(out, html)
    return out
