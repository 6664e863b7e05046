"""`bench/gpu_check.sh --device cpu`: the GPU check's seven parts at toy size, end to end (slow).
Every part produced a figure or a "skipped: why", and the one JSON and one markdown table are
written. Fast: the script's refusals, a part it has no time left for, --parts keeping the others,
and bench/certify.py's refusal of a missing CUDA and its skip when ART's certify cannot import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _part(outdir: Path, key: str, figures: dict, status: str) -> None:
    (outdir / "parts" / f"{key}.json").write_text(json.dumps(figures))
    (outdir / "parts" / f"{key}.status").write_text(status)


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=2100)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, json.loads((out / "gpu-check.json").read_text())


@pytest.mark.slow
def test_every_part_gives_a_figure_or_says_why_it_was_skipped(check):
    out, data = check
    assert set(data["parts"]) == {"1-tests", "2-recipes", "3-attacks", "4-training", "5-jobs",
                                  "6-torchrun", "7-certify"}  # fmt: skip
    for key, part in data["parts"].items():
        assert part["status"] in ("ok", "skipped"), (key, part["status"], part.get("why"))
        if part["status"] == "skipped":
            assert part["why"], key
    # no CUDA here: pytest skips the gpu tests, and the part says so with its counts
    tests = data["parts"]["1-tests"]
    assert tests["status"] == "skipped" and tests["why"].startswith("no CUDA here")
    assert tests["figures"]["skipped_tests"] >= 1 and tests["figures"]["passed"] == 0
    for key in ("2-recipes", "3-attacks", "4-training", "5-jobs", "6-torchrun", "7-certify"):
        assert data["parts"][key]["status"] == "ok", (key, data["parts"][key].get("why"))


@pytest.mark.slow
def test_the_figures_are_those_of_each_part(check):
    _, data = check
    f = {k: p["figures"] for k, p in data["parts"].items()}
    assert set(f["2-recipes"]["recipes"]) == {"standard", "pgd"}
    assert f["2-recipes"]["recipes"]["pgd"]["art_over_native"] > 0  # pgd has an ART trainer
    attacks = f["3-attacks"]
    assert 0 <= attacks["advrun"]["robust_accuracy"] <= attacks["clean_accuracy"]
    for ref in ("torchattacks", "original"):  # measured, or not installed (no .whl/ in CI)
        assert "seconds" in attacks[ref] or "not installed" in attacks[ref]["skipped"], ref
        if "seconds" in attacks[ref]:  # the suite is never weaker than AutoAttack by > 0.5 point
            assert attacks[ref]["gap_points"] <= 0.5, attacks[ref]
    for model in f["4-training"]["models"].values():
        assert set(model["configs"]) == {"bare", "native", "bf16", "channels_last",
                                         "bf16+channels_last", "bf16+channels_last+compile"}  # fmt: skip
        assert all(c["img_per_s"] > 0 and c["peak_mib"] is None for c in model["configs"].values())
    assert f["5-jobs"]["same_results"] is True  # deterministic: --jobs 2 changes no number
    assert f["6-torchrun"]["backend"] == "gloo" and f["6-torchrun"]["world_size"] == 1
    cert = f["7-certify"]  # the certification bench at toy size, same n for advrun and ART
    assert cert["device"] == "cpu" and [r["model"] for r in cert["models"]] == ["cnn", "cifar"]
    for r in cert["models"]:
        assert (r["n0"], r["n"], r["examples"], r["batch"], r["art_batch"]) == (
            100,
            1000,
            2,
            1024,
            32,
        )
        assert all(v > 0 for v in r["s_per_example"].values()), r
        assert r["speedup_vs_art"] == pytest.approx(
            r["s_per_example"]["art"] / r["s_per_example"]["advrun"]
        )
        assert 0 <= r["certified_accuracy_r0"]["advrun"] <= 1


@pytest.mark.slow
def test_the_table_names_every_part_and_leaves_the_gpu_targets_unmeasured(check):
    out, data = check
    md = (out / "gpu-check.md").read_text()
    for key in data["parts"]:
        assert f"| {key[0]} " in md, key
    assert [t["verdict"] for t in data["targets"]] == ["unmeasured"] * 5
    assert md.count("**unmeasured** (toy size on cpu: the targets are GPU claims)") == 5
    row = next(ln for ln in md.splitlines() if "faster than ART at the same n (issue 20)" in ln)
    assert row.startswith("| target | certification >= 20x faster than ART at the same n")
    assert "cnn " in row and "cifar " in row and "n 1000)" in row, row


def test_the_script_refuses_an_unknown_device_and_records_parts_it_has_no_time_for(tmp_path):
    script = ROOT / "bench" / "gpu_check.sh"
    r = subprocess.run(["bash", str(script), "--device", "tpu"], capture_output=True, text=True)
    assert r.returncode == 2 and "--device cuda or cpu, not 'tpu'" in r.stderr
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_TOTAL_S="0")
    r = subprocess.run(["bash", str(script), "--device", "cpu", str(tmp_path / "gc")], env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "gc" / "gpu-check.json").read_text())
    for key, part in data["parts"].items():
        assert part["status"] == "skipped", key
        assert part["why"] == "not started: the check's 0 s were spent", key
    assert data["environment"]["python"] == ".".join(map(str, sys.version_info[:3]))
    # --parts reruns the parts named and keeps the others' files (a rerun after a failure)
    _part(tmp_path / "gc", "5-jobs", {"runs": 4, "jobs1_s": 9.0, "jobs2_s": 6.0, "speedup": 1.5,
                                      "same_results": True}, "0 20 50")  # fmt: skip
    (tmp_path / "gc" / "parts" / "5-jobs.skip").unlink()
    r = subprocess.run(["bash", str(script), "--device", "cpu", "--parts", "2,3", str(tmp_path / "gc")],
                       env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    parts = json.loads((tmp_path / "gc" / "gpu-check.json").read_text())["parts"]
    assert parts["5-jobs"]["status"] == "ok" and parts["5-jobs"]["figures"]["speedup"] == 1.5
    assert parts["2-recipes"]["why"] == "not started: the check's 0 s were spent"
    r = subprocess.run(["bash", str(script), "--parts"], capture_output=True, text=True)
    assert r.returncode == 2 and "--parts needs a value" in r.stderr
    r = subprocess.run(["bash", str(script), "--parts", "7,8"], capture_output=True, text=True)
    assert r.returncode == 2 and "part numbers 1 to 7" in r.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_the_certify_bench_refuses_cuda_without_it_and_skips_without_arts_certify(tmp_path):
    bench = [sys.executable, str(ROOT / "bench" / "certify.py")]
    r = subprocess.run([*bench, "--device", "cuda", "--models", "cnn"], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 2 and "--device cuda asked, but CUDA is not available here" in r.stderr
    # statsmodels (which ART's Clopper-Pearson bound imports) made unimportable: nothing timed
    shim = tmp_path / "shim" / "statsmodels"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('statsmodels hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "shim"))
    out = tmp_path / "7-certify.json"
    r = subprocess.run([*bench, "--models", "cnn", "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    figures = json.loads(out.read_text())
    assert figures["models"] == []
    assert figures["skipped"] == "ART's certify cannot run here: statsmodels hidden by the test"
