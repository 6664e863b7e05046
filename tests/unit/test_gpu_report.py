"""The GPU check's writer (bench/gpu_report.py) and its skip logic: every part a figure or
"skipped: why", the targets met / missed / unmeasured from the figures (the script itself:
tests/integration/test_gpu_check.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import gpu_report  # noqa: E402

RECIPES = {
    "arch": "small_cnn", "n_train": 1258, "repeats": 2,
    "recipes": {
        "standard": {"native_s": 0.10, "bare_s": 0.10, "art_s": None, "native_over_bare": 1.0,
                     "art_over_native": None},
        "pgd": {"native_s": 0.20, "bare_s": 0.19, "art_s": 2.6, "native_over_bare": 1.05,
                "art_over_native": 13.0},
    },
}  # fmt: skip
ATTACKS = {
    "n": 1000, "model": "small_cnn", "clean_accuracy": 0.99,
    "advrun": {"attacks": ["fgsm", "pgd20"], "seconds": [2.0, 2.2], "robust_accuracy": 0.19},
    "torchattacks": {"seconds": 25.2, "robust_accuracy": 0.19, "gap_points": 0.0, "speedup": 12.0,
                     "broken_only_by_advrun": 0, "broken_only_by_reference": 0},
    "original": {"skipped": "pyautoattack is not installed (No module named 'pyautoattack')"},
}  # fmt: skip


def _certify_row(model: str, speedup: float, same_batch: float) -> dict:
    return {
        "model": model, "device": "cuda", "input": [1, 8, 8], "examples": 6, "n0": 100,
        "n": 10000, "batch": 4096, "art_batch": 32, "threads": 16,
        "s_per_example": {"bare": 0.002, "advrun": 0.0025, "art": 0.0025 * speedup,
                          "art_batch_4096": 0.0025 * same_batch},
        "speedup_vs_art": speedup, "speedup_vs_art_batch_4096": same_batch,
        "advrun_vs_bare": 1.25, "certified_accuracy_r0": {"advrun": 0.833, "art": 0.833},
    }  # fmt: skip


def _certify(*rows: dict) -> dict:
    return {"device": "cuda", "torch": "2.11.0", "sigma": 0.25, "alpha": 0.001, "gpu": "H100",
            "models": list(rows)}  # fmt: skip


def _config(img_per_s: float) -> dict:
    return {"seconds": [1.0, 1.1], "first_epoch_s": 2.0, "img_per_s": img_per_s, "peak_mib": 900}


def _training(bf16: float) -> dict:
    return {
        "batch_size": 128, "pgd_steps": 10,
        "models": {"wrn": {"arch": "wide_resnet", "kwargs": {"depth": 34, "widen_factor": 10},
                           "n": 1024, "configs": {"bare": _config(100.0), "native": _config(98.0),
                                                  "bf16": _config(bf16)}}},
    }  # fmt: skip


def _part(outdir: Path, key: str, figures: dict | None, status: str | None, log: str = "") -> None:
    (outdir / "parts").mkdir(parents=True, exist_ok=True)
    (outdir / "logs").mkdir(parents=True, exist_ok=True)
    if figures is not None:
        (outdir / "parts" / f"{key}.json").write_text(json.dumps(figures))
    if status is not None:
        (outdir / "parts" / f"{key}.status").write_text(status)
    (outdir / "logs" / f"{key}.log").write_text(log)


@pytest.fixture
def outdir(tmp_path):
    _part(tmp_path, "1-tests", {"passed": 7, "failed": 0, "errors": 0, "skipped_tests": 0,
                                "failing": [], "files": ["tests/a.py"], "seconds": 40}, "0 41 70")  # fmt: skip
    _part(tmp_path, "2-recipes", RECIPES, "0 50 60")
    _part(tmp_path, "3-attacks", ATTACKS, "0 80 90")
    _part(tmp_path, "4-training", _training(bf16=180.0), "124 160 160")  # cut short, figures kept
    _part(
        tmp_path, "5-jobs", None, "1 3 50", log="Traceback ...\nRuntimeError: CUDA out of memory\n"
    )
    # 6-torchrun: never started (no status at all)
    _part(tmp_path, "7-certify", _certify(_certify_row("cnn", 31.0, 9.0),
                                          _certify_row("cifar", 120.0, 110.0)), "0 30 45")  # fmt: skip
    return tmp_path


def test_each_part_is_ok_partial_or_skipped_with_why(outdir):
    parts = gpu_report.build(outdir, "cuda", 400.0)["parts"]
    assert [parts[k]["status"] for k in gpu_report.PARTS] == [
        "ok", "ok", "ok", "partial", "skipped", "skipped", "ok"]  # fmt: skip
    assert parts["4-training"]["why"] == "timed out after 160 s"
    assert parts["5-jobs"]["why"] == "exit 1: RuntimeError: CUDA out of memory"
    assert parts["6-torchrun"]["why"] == "not run (no status recorded)"


def test_a_part_that_measured_nothing_says_why(tmp_path):
    _part(tmp_path, "1-tests", {"skipped": "no CUDA here: pytest skipped all 7 gpu tests",
                                "passed": 0, "failed": 0, "errors": 0, "skipped_tests": 7,
                                "files": ["tests/a.py"], "seconds": 9}, "0 10 70")  # fmt: skip
    (tmp_path / "parts" / "2-recipes.skip").write_text("not started: the check's 470 s were spent")
    parts = gpu_report.build(tmp_path, "cpu", 10.0)["parts"]
    assert parts["1-tests"]["status"] == "skipped"
    assert parts["1-tests"]["why"].startswith("no CUDA here")
    assert parts["2-recipes"]["status"] == "skipped" and parts["2-recipes"]["figures"] is None
    assert parts["2-recipes"]["why"] == "not started: the check's 470 s were spent"


def test_targets_are_met_missed_or_unmeasured_from_the_figures(outdir):
    t = {x["target"]: x for x in gpu_report.build(outdir, "cuda", 400.0)["targets"]}
    native = t["native vs bare loop"]
    assert native["verdict"] == "met" and native["measured"] == pytest.approx(1.05)  # the worst
    assert t["ART vs native (small CNN)"]["verdict"] == "met"  # 13x, only pgd has an ART trainer
    assert t["ART vs native (small CNN)"]["measured"] == 13.0
    assert t["suite vs torchattacks' AutoAttack"]["verdict"] == "met"
    assert t["bf16 vs fp32 on WRN-34-10"]["verdict"] == "met"
    assert t["bf16 vs fp32 on WRN-34-10"]["measured"] == pytest.approx(180 / 98)
    cert = t["certification >= 20x faster than ART at the same n (issue 20)"]
    assert cert["verdict"] == "met" and cert["measured"] == 31.0  # the slower model decides
    assert cert["figure"] == ("cnn 31.0x (9.0x at the same batch 4096; n 10000), "
                              "cifar 120.0x (110.0x at the same batch 4096; n 10000)")  # fmt: skip


CERTIFY_TARGET = "certification >= 20x faster than ART at the same n (issue 20)"


def test_the_certification_target_missed_cut_short_or_skipped(outdir):
    _part(outdir, "7-certify", _certify(_certify_row("cnn", 12.5, 4.0),
                                        _certify_row("cifar", 80.0, 70.0)), "0 30 45")  # fmt: skip
    t = {x["target"]: x for x in gpu_report.build(outdir, "cuda", 400.0)["targets"]}
    assert t[CERTIFY_TARGET]["verdict"] == "missed" and t[CERTIFY_TARGET]["measured"] == 12.5
    # cut short after the first model: judged on it, the part marked partial
    _part(outdir, "7-certify", _certify(_certify_row("cnn", 25.0, 8.0)), "124 45 45")
    report = gpu_report.build(outdir, "cuda", 400.0)
    assert report["parts"]["7-certify"]["status"] == "partial"
    t = {x["target"]: x for x in report["targets"]}
    assert t[CERTIFY_TARGET]["verdict"] == "met" and t[CERTIFY_TARGET]["measured"] == 25.0
    # ART's certify could not run: nothing timed, the part and the target say why
    why = "ART's certify cannot run here: No module named 'statsmodels'"
    _part(outdir, "7-certify", _certify() | {"skipped": why}, "0 6 45")
    report = gpu_report.build(outdir, "cuda", 400.0)
    assert report["parts"]["7-certify"]["status"] == "skipped"
    t = {x["target"]: x for x in report["targets"]}
    assert t[CERTIFY_TARGET]["verdict"] == "unmeasured" and t[CERTIFY_TARGET]["why"] == why


def test_a_missed_target_and_an_unmeasured_one(outdir):
    _part(outdir, "4-training", _training(bf16=90.0), "0 100 160")  # bf16 slower than fp32
    slower = dict(ATTACKS, torchattacks=dict(ATTACKS["torchattacks"], gap_points=1.2))
    _part(outdir, "3-attacks", slower, "0 80 90")  # 12x faster but 1.2 points weaker
    (outdir / "parts" / "2-recipes.json").unlink()
    (outdir / "parts" / "2-recipes.status").write_text("124 60 60")
    t = {x["target"]: x for x in gpu_report.build(outdir, "cuda", 400.0)["targets"]}
    assert t["bf16 vs fp32 on WRN-34-10"]["verdict"] == "missed"
    assert t["suite vs torchattacks' AutoAttack"]["verdict"] == "missed"
    art = t["ART vs native (small CNN)"]
    assert art["verdict"] == "unmeasured" and art["why"] == "timed out after 60 s"
    # native/bare still judged on what part 4 measured
    assert t["native vs bare loop"]["verdict"] == "met"


def test_a_part_cut_short_shows_what_it_measured_first(outdir):
    _part(outdir, "5-jobs", {"runs": 4, "jobs1_s": 21.0}, "124 50 50")
    gpu_report.write(outdir, "cuda", 400.0)
    md = (outdir / "gpu-check.md").read_text()
    assert "| 4 runs: --jobs 1 | 21.0 s (--jobs 2 did not finish) |" in md
    assert (
        "| 5 --jobs 2 --jobs-per-gpu 2 vs --jobs 1 | partial | partial: timed out after 50 s |"
        in md
    )


def test_on_a_cpu_every_target_is_unmeasured(outdir):
    report = gpu_report.build(outdir, "cpu", 400.0)
    assert {x["verdict"] for x in report["targets"]} == {"unmeasured"}
    assert all("toy size on cpu" in x["why"] for x in report["targets"])


def test_the_markdown_is_one_table_with_every_part_and_target(outdir):
    gpu_report.write(outdir, "cuda", 400.0)
    md = (outdir / "gpu-check.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert md.count("| part | measurement |") == 1
    assert all(ln.count("|") == 6 for ln in table), table  # no cell breaks the table
    for key in gpu_report.PARTS:
        assert any(ln.startswith(f"| {key[0]} ") for ln in table), key
    assert "| 6 torchrun, one process, DDP | skipped | skipped: not run (no status recorded)" in md
    assert "pyautoattack is not installed" in md
    assert sum(ln.startswith("| target |") for ln in table) == 5
    assert ("| 7 randomized-smoothing certification vs ART's certify | cnn 1x8x8, 6 examples, "
            "n0 100, n 10000, sigma 0.25, batch 4096 | s/example: bare 0.0020, advrun 0.0025, "
            "ART (batch 32) 0.0775, ART (batch 4096) 0.0225; advrun 31.0x faster than ART's "
            "default, 9.0x at the same batch, 1.25x the bare loop; certified@0 advrun 0.833, "
            "ART 0.833 | – | – |") in md  # fmt: skip
    assert "**met**" in md and "**unmeasured**" not in md.split("| target |", 1)[0]
    data = json.loads((outdir / "gpu-check.json").read_text())
    assert data["schema"] == "advrun-gpu-check/1" and set(data["parts"]) == set(gpu_report.PARTS)


def test_the_gpu_tests_are_counted_from_junit_or_from_a_run_cut_short(tmp_path):
    from bench import gpu_parts

    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1">'
        '<testcase classname="t.a" name="one"/><testcase classname="t.a" name="two">'
        '<failure message="boom"/></testcase><testcase classname="t.b" name="three">'
        '<skipped message="needs CUDA"/></testcase><testcase classname="t.b" name="four"/>'
        "</testsuite></testsuites>"
    )
    got = gpu_parts.junit_counts(xml)
    assert (got["passed"], got["failed"], got["errors"], got["skipped_tests"]) == (2, 1, 0, 1)
    assert got["failing"] == ["t.a::two"] and got["skip_reasons"] == ["needs CUDA"]
    cut = gpu_parts.verbose_counts(
        "tests/a.py::test_one PASSED [ 14%]\ntests/a.py::test_two[pgd] FAILED [ 28%]\n"
        "tests/b.py::test_three "  # the run was killed here
    )
    assert (cut["passed"], cut["failed"], cut["skipped_tests"]) == (1, 1, 0)
    assert cut["failing"] == ["tests/a.py::test_two[pgd]"]
    assert "tests/integration/test_gpu_fast_path.py" in gpu_parts.gpu_test_files()
