"""The inline SVG plot helper: round ticks, escaped text, gaps for missing values."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from runner.report import svg


@pytest.mark.parametrize(
    ("lo", "hi", "integer", "expected"),
    [
        (0, 1, False, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.02, 0.3, False, [0, 0.1, 0.2, 0.3]),
        (1, 2, True, [1, 2]),
        (1, 15, True, [0, 5, 10, 15]),
        (3, 3, False, [3, 4, 5, 6]),
    ],
)
def test_nice_ticks(lo, hi, integer, expected):
    assert svg.nice_ticks(lo, hi, integer=integer) == pytest.approx(expected)


def test_plots_are_valid_svg_with_escaped_text():
    evil = "<script>x</script> & co"
    plots = [
        svg.line_plot(
            [svg.Series(evil, [0, 1, 2, 3], [0.1, math.nan, 0.5, None], lo=[0] * 4, hi=[1] * 4)],
            evil,
            "eps",
            "accuracy",
        ),
        svg.bar_plot(["clean", evil], [(evil, [0.5, None], [0.4, None], [0.6, None])], evil, "a"),
        svg.hbar_plot([evil, "b"], [0.7, 0.3], evil, "importance"),
    ]
    for p in plots:
        assert isinstance(p, Markup) and "<script>" not in p and "&lt;script&gt;" in p
        root = ET.fromstring(str(p))  # well-formed XML
        assert root.tag == "svg" and root.find("title").text == evil
    # NaN/None leave gaps: no single polyline joins points across them
    line = ET.fromstring(str(plots[0]))
    assert all(len(p.get("points").split()) < 4 for p in line.iter("polyline"))
