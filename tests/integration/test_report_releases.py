"""The monitoring view of `advrun report REL1 REL2 ...`: accuracy per release of one model."""

from __future__ import annotations

import json
import shutil

import pytest
from report_helpers import EVIL, copy_experiment

from runner.cli import main


def _edit_metrics(out, fn) -> None:
    for path in (out / "runs").glob("*/metrics.json"):
        m = json.loads(path.read_text())
        fn(m)
        path.write_text(json.dumps(m))


@pytest.fixture
def releases(tmp_path_factory, tmp_path):
    """v1: the tiny experiment; v2: the same with every worst-case accuracy 10 points lower
    (a release that lost robustness); other: v1 under another threat model."""
    _, v1 = copy_experiment(tmp_path_factory, tmp_path)
    v1 = v1.rename(tmp_path / "v1")
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)

    def lower(m):
        for r in m["results"]:
            if r["attack"] == "worst_case":
                for k in ("accuracy", "ci_low", "ci_high"):
                    r[k] = round(r[k] - 0.1, 6)

    _edit_metrics(v2, lower)
    other = tmp_path / "other"
    shutil.copytree(v1, other)
    for path in (other / "runs").glob("*/run.json"):
        cfg = json.loads(path.read_text())
        cfg["threat"]["eps"] = 0.3
        path.write_text(json.dumps(cfg))
    return v1, v2, other


def test_releases_of_one_model_form_a_time_series(releases, tmp_path):
    v1, v2, _ = releases
    out = tmp_path / "monitor.html"
    assert main(["report", str(v1), str(v2), "-o", str(out)]) == 0
    report = json.loads((v1 / "results.json").read_text())
    assert report["releases"]["comparable"]
    rel = report["releases"]
    assert rel["labels"] == ["tiny (v1)", "tiny (v2)"]
    by = {s["name"]: s for s in rel["series"]}
    assert set(by) == {
        f"{EVIL}@{r}: {m}" for r in ("standard", "madry") for m in ("clean", "worst case")
    }
    groups = {g["group"]: g for g in report["experiments"][0]["groups"]}
    for recipe in ("standard", "madry"):
        worst = by[f"{EVIL}@{recipe}: worst case"]
        first = groups[f"{EVIL}@{recipe}"]["cells"]["worst_case"]
        assert worst["mean"][0] == pytest.approx(first["mean"])
        assert worst["mean"][1] == pytest.approx(first["mean"] - 0.1)
        assert worst["ci_low"][0] == pytest.approx(first["ci_low"])
        clean = by[f"{EVIL}@{recipe}: clean"]
        assert clean["mean"][0] == clean["mean"][1]  # clean accuracy did not move
    assert sorted(d["group"] for d in rel["drift"]) == [f"{EVIL}@madry", f"{EVIL}@standard"]
    assert all(d["drop"] == pytest.approx(0.1) for d in rel["drift"])
    html = out.read_text()
    section = html[html.index('id="releases"') : html.index('id="curves"')]
    assert "Releases over time" in section and "Accuracy per release (95% CI)" in section
    assert "<svg" in section and "polygon" in section  # the interval bands
    assert "worst-case accuracy fell by 10.0 points from tiny (v1) to tiny (v2)" in section
    assert EVIL not in html and "&lt;script&gt;" in section  # user text is escaped


def test_directories_with_another_threat_model_are_not_a_series(releases, tmp_path):
    v1, _, other = releases
    out = tmp_path / "mixed.html"
    assert main(["report", str(v1), str(other), "-o", str(out)]) == 0
    rel = json.loads((v1 / "results.json").read_text())["releases"]
    assert rel == {"comparable": False, "why": "their threat models differ"}
    html = out.read_text()
    assert "These directories are not releases of one model: their threat models differ" in html
    single = tmp_path / "single.html"
    assert main(["report", str(v1), "-o", str(single)]) == 0
    assert 'id="releases"' not in single.read_text()
