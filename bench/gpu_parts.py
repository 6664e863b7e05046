"""Parts 1, 5 and 6 of bench/gpu_check.sh, each through advrun's or pytest's own command line.

    python3 bench/gpu_parts.py tests    --device cuda --out FILE
    python3 bench/gpu_parts.py jobs     --device cuda --out FILE
    python3 bench/gpu_parts.py torchrun --device cuda --out FILE

- ``tests``: the ``gpu``-marked tests (``pytest -m gpu`` on the files that hold them), counted
  from pytest's JUnit XML; without CUDA pytest skips them all, and the part says so.
- ``jobs``: one 4-run spec (2 recipes x 2 seeds, ``deterministic: true``) run with ``--jobs 1``
  and with ``--jobs 2 --jobs-per-gpu 2`` (two spawned jobs sharing the one GPU): wall seconds of
  each, the speed-up, and whether both gave the same results.csv (timing columns aside).
- ``torchrun``: ``torchrun --standalone --nproc_per_node=1 -m runner run`` with ``ADVRUN_DDP=1``,
  so the one rank trains through DistributedDataParallel on a process group (nccl on CUDA, gloo
  on a CPU): the backend and world size its metrics.json records, and its accuracies.

Sizes: on CUDA small CNNs train on all of digits for 8 epochs (a few seconds a run on an H100,
an estimate never checked on one), on a CPU on 300 digits for 1 epoch (torchrun: 5). A part cut
short by its time limit (``GPU_CHECK_PART_BUDGET``, exported by the script) keeps what it
measured first: the tests finished so far, the ``--jobs 1`` timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOBS_SPEC = """\
name: gpu-jobs
seeds: [0, 1]
device: {device}
deterministic: true
data: {{dataset: digits{limit}}}
threat: {{norm: linf, eps: 0.1}}
models: [{{name: cnn, arch: small_cnn}}]
recipes:
  - {{name: pgd, kind: pgd, epochs: {epochs}, steps: 7, step_size: eps/4, monitor: {{n: 128}}}}
  - {{name: trades, kind: trades, epochs: {epochs}, steps: 7, step_size: eps/4, beta: 6,
     monitor: {{n: 128}}}}
attacks:
  - {{name: fgsm, kind: fgsm}}
  - {{name: pgd10, kind: pgd, engine: native, steps: 10, step_size: eps/4}}
eval: {{checklist: false, bootstrap: 100}}
"""
DDP_SPEC = """\
name: gpu-ddp
seeds: [0]
device: {device}
data: {{dataset: digits{limit}}}
threat: {{norm: linf, eps: 0.1}}
models: [{{name: cnn, arch: small_cnn}}]
recipes:
  - {{name: pgd, kind: pgd, epochs: {epochs}, steps: 5, step_size: eps/4, batch_size: 64,
     monitor: {{n: 128, steps: 5}}}}
attacks: [{{name: pgd10, kind: pgd, engine: native, steps: 10, step_size: eps/4}}]
eval: {{checklist: false, bootstrap: 100}}
"""
TIMING = ("train_seconds", "eval_seconds")


def _sizes(device: str) -> dict[str, str]:
    return (
        {"limit": "", "epochs": "15"}
        if device == "cuda"
        else {"limit": ", limit: 300", "epochs": "1"}
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _env(**extra: str) -> dict[str, str]:
    """This checkout first on the path (the subprocess runs ``-m runner`` from it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env | extra


def _write(path: Path, figures: dict) -> None:
    path.write_text(json.dumps(figures, indent=2) + "\n")


def _tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def gpu_test_files() -> list[str]:
    """The test files that hold a ``gpu``-marked test."""
    return sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if "pytest.mark.gpu" in p.read_text(encoding="utf-8")
    )


def junit_counts(xml: Path) -> dict:
    """passed/failed/errors/skipped and the failing tests' names, from pytest's JUnit XML."""
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = {
        k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")
    }
    failing = [
        f"{c.get('classname')}::{c.get('name')}"
        for c in root.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ]
    reasons = sorted({s.get("message", "") for s in root.iter("skipped")})
    return {
        "passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
        "failed": n["failures"],
        "errors": n["errors"],
        "skipped_tests": n["skipped"],
        "failing": failing,
        "skip_reasons": reasons,
    }


def _budget() -> float | None:
    """Seconds this part may take (bench/gpu_check.sh exports them), less 5 to write figures."""
    value = os.environ.get("GPU_CHECK_PART_BUDGET")
    return float(value) - 5 if value else None


def verbose_counts(stdout: str) -> dict:
    """Outcomes of the tests that finished, from ``pytest -v`` lines (a run cut short)."""
    found = re.findall(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)", stdout, re.M)
    n = {k: sum(o == k for _, o in found) for k in ("PASSED", "FAILED", "SKIPPED", "ERROR")}
    return {"passed": n["PASSED"], "failed": n["FAILED"], "errors": n["ERROR"],
            "skipped_tests": n["SKIPPED"],
            "failing": [t for t, o in found if o in ("FAILED", "ERROR")], "skip_reasons": []}  # fmt: skip


def part_tests(device: str, out: Path) -> int:
    """pytest -m gpu on the files that hold gpu tests; the tests finished so far when cut short."""
    files = gpu_test_files()
    with tempfile.TemporaryDirectory() as d:
        xml = Path(d) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider",
               f"--junitxml={xml}", *files]  # fmt: skip
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                               timeout=_budget())  # fmt: skip
        except subprocess.TimeoutExpired as e:
            text = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
            figures = verbose_counts(text or "") | {"files": files, "cut_short": True,
                                                    "seconds": time.perf_counter() - t0}  # fmt: skip
            _write(out, figures)
            return 124  # as timeout(1) says it: the report marks the part partial
        secs = time.perf_counter() - t0
        if not xml.exists():
            why = f"pytest wrote no report (exit {r.returncode}): {_tail(r.stdout + r.stderr, 2)}"
            _write(out, {"skipped": why})
            return 0
        figures = junit_counts(xml) | {"files": files, "seconds": secs, "exit": r.returncode}
    if figures["passed"] == 0 and figures["failed"] == 0 and figures["errors"] == 0:
        why = "no CUDA here" if not _cuda() else "; ".join(figures["skip_reasons"])
        figures["skipped"] = f"{why}: pytest skipped all {figures['skipped_tests']} gpu tests"
    _write(out, figures)
    return 0


def _run_cli(args: list[str], **env: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, env=_env(**env),
                       capture_output=True, text=True)  # fmt: skip
    return time.perf_counter() - t0, r


def part_jobs(device: str, out_file: Path) -> int:
    """The 4-run spec with --jobs 1, then --jobs 2 --jobs-per-gpu 2 (figures after each)."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "jobs.yaml"
        spec.write_text(JOBS_SPEC.format(device=device, **_sizes(device)))
        secs, results = {}, {}
        for name, flags in (
            ("jobs1", ["--jobs", "1"]),
            ("jobs2", ["--jobs", "2", "--jobs-per-gpu", "2"]),
        ):
            out = Path(d) / name
            secs[name], r = _run_cli(
                ["run", str(spec), "-o", str(out), "-q", "--no-report", *flags]
            )
            if r.returncode != 0:
                raise SystemExit(f"advrun run {' '.join(flags)} failed: {_tail(r.stderr)}")
            results[name] = pd.read_csv(out / "results.csv")
            _write(out_file, {"runs": 4} | {f"{k}_s": v for k, v in secs.items()})
        a, b = results["jobs1"], results["jobs2"]
        keep = [c for c in a.columns if c not in TIMING]
        same = list(a.columns) == list(b.columns) and a[keep].equals(b[keep])
    _write(out_file, {
        "runs": 4,
        "jobs1_s": secs["jobs1"],
        "jobs2_s": secs["jobs2"],
        "speedup": secs["jobs1"] / secs["jobs2"],
        "same_results": bool(same),
    })  # fmt: skip
    return 0


def part_torchrun(device: str, out_file: Path) -> int:
    """One run under torchrun, one rank, through DDP (ADVRUN_DDP=1)."""
    from runner.store import RunDir

    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "ddp.yaml"
        sizes = _sizes(device) | ({} if device == "cuda" else {"epochs": "5"})  # learns something
        spec.write_text(DDP_SPEC.format(device=device, **sizes))
        out = Path(d) / "out"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               "-m", "runner", "run", str(spec), "-o", str(out), "-q", "--no-report"]  # fmt: skip
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, env=_env(ADVRUN_DDP="1"), capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"torchrun failed (exit {r.returncode}): {_tail(r.stderr)}")
        (run_dir,) = [p for p in (out / "runs").iterdir() if p.is_dir()]
        metrics = RunDir(run_dir).read_metrics()
    assert metrics is not None, "the torchrun run left no metrics"
    ex = metrics.execution
    acc = {row.attack: row.accuracy for row in metrics.results}
    _write(out_file, {
        "backend": ex.backend if ex else None,
        "world_size": ex.world_size if ex else None,
        "device": ex.device if ex else None,
        "seconds": secs,
        "accuracy": acc,
    })  # fmt: skip
    return 0


PARTS = {"tests": part_tests, "jobs": part_jobs, "torchrun": part_torchrun}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=list(PARTS))
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--out", required=True, help="write the part's figures as JSON here")
    args = ap.parse_args()
    rc = PARTS[args.part](args.device, Path(args.out))
    print(Path(args.out).read_text() if Path(args.out).exists() else "no figures")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
