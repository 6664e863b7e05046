"""The GPU check's one JSON and one markdown table, from what each part left in OUTDIR.

    python3 bench/gpu_report.py OUTDIR --device cuda [--seconds S]

bench/gpu_check.sh runs each part under ``timeout`` and leaves, per part KEY, in OUTDIR/parts/:
``KEY.json`` (its figures, written by the part itself, possibly before it was cut short; a
top-level ``skipped`` says why it could not measure), ``KEY.status`` (``exit seconds budget``)
or ``KEY.skip`` (why it was not started), and its output in OUTDIR/logs/KEY.log. This turns them
into ``gpu-check.json`` and ``gpu-check.md``: every part a figure or "skipped: why", and the five
GPU targets each met, missed or unmeasured. Imports no torch (the environment is read by the
script before, into OUTDIR/parts/env.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

PARTS = {
    "1-tests": "gpu-marked tests",
    "2-recipes": "recipes: native vs bare loop vs ART",
    "3-attacks": "attack suite vs torchattacks and the original AutoAttack",
    "4-training": "PGD-10 training throughput",
    "5-jobs": "--jobs 2 --jobs-per-gpu 2 vs --jobs 1",
    "6-torchrun": "torchrun, one process, DDP",
    "7-certify": "randomized-smoothing certification vs ART's certify",
}
TIMED_OUT = (124, 137)  # timeout's exit code, and SIGKILL after its grace period


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    return lines[-1][:300] if lines else "no output"


def part_state(outdir: Path, key: str) -> dict:
    """One part's status (ok, partial, skipped), why, seconds and figures."""
    parts = outdir / "parts"
    figures = _read_json(parts / f"{key}.json")
    skip = parts / f"{key}.skip"
    if skip.exists():
        return {"status": "skipped", "why": skip.read_text().strip(), "figures": figures}
    try:
        rc, seconds, budget = parts.joinpath(f"{key}.status").read_text().split()[:3]
        rc, seconds, budget = int(rc), float(seconds), float(budget)
    except (OSError, ValueError):
        return {"status": "skipped", "why": "not run (no status recorded)", "figures": figures}
    state = {"seconds": seconds, "budget_s": budget, "figures": figures}
    if rc == 0 and figures and figures.get("skipped"):
        return state | {"status": "skipped", "why": str(figures["skipped"])}
    if rc == 0 and figures:
        return state | {"status": "ok", "why": None}
    if rc == 0:
        why = "finished without writing figures"
    elif rc in TIMED_OUT:
        why = f"timed out after {budget:.0f} s"
    else:
        why = f"exit {rc}: {_last_line(outdir / 'logs' / f'{key}.log')}"
    return state | {"status": "partial" if figures else "skipped", "why": why}


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "–" if v is None else format(v, fmt)


# -- each part's figure rows: (measurement, figure) ------------------------------------------
def rows_tests(f: dict) -> Iterator[tuple[str, str]]:
    files = ", ".join(Path(p).name for p in f.get("files", []))
    yield (f"pytest -m gpu ({files})",
           f"{f['passed']} passed, {f['failed']} failed, {f['errors']} errors, "
           f"{f['skipped_tests']} skipped in {f['seconds']:.0f} s")  # fmt: skip
    for name in f.get("failing", []):
        yield ("failing", name)


def rows_recipes(f: dict) -> Iterator[tuple[str, str]]:
    for kind, r in f.get("recipes", {}).items():
        art = f", ART/native {r['art_over_native']:.2f}" if r.get("art_over_native") else ""
        yield (f"{kind} ({f['arch']}, {f['n_train']} images, best of {f['repeats']})",
               f"native {r['native_s']:.3f} s, bare {r['bare_s']:.3f} s, native/bare "
               f"{r['native_over_bare']:.2f}{art}")  # fmt: skip


def rows_attacks(f: dict) -> Iterator[tuple[str, str]]:
    a = f.get("advrun", {})
    if "seconds" in a:
        yield (f"advrun suite ({', '.join(a['attacks'])}), n={f['n']}, {f['model']}",
               f"{sum(a['seconds']) / 2:.2f} s (runs {a['seconds'][0]:.2f}, "
               f"{a['seconds'][1]:.2f}), robust accuracy {a['robust_accuracy']:.4f}, clean "
               f"{f['clean_accuracy']:.4f}")  # fmt: skip
    for ref, label in (
        ("torchattacks", "torchattacks AutoAttack"),
        ("original", "original AutoAttack"),
    ):
        r = f.get(ref)
        if not r:
            continue
        if "skipped" in r:
            yield (label, f"skipped: {r['skipped']}")
            continue
        yield (label, f"{r['seconds']:.2f} s (advrun {r['speedup']:.1f}x faster), robust "
               f"accuracy {r['robust_accuracy']:.4f}, advrun - it {r['gap_points']:+.2f} points; "
               f"broken only by advrun / only by it {r['broken_only_by_advrun']} / "
               f"{r['broken_only_by_reference']}")  # fmt: skip


def rows_training(f: dict) -> Iterator[tuple[str, str]]:
    for m in f.get("models", {}).values():
        kw = ", ".join(f"{k}={v}" for k, v in m["kwargs"].items())
        name = f"{m['arch']}({kw})" if kw else m["arch"]
        for config, r in m["configs"].items():
            peak = f", peak {r['peak_mib']:,.0f} MiB" if r.get("peak_mib") is not None else ""
            first = f", first epoch {r['first_epoch_s']:.1f} s" if "compile" in config else ""
            yield (f"{name} {config}, {m['n']} images, batch {f['batch_size']}, "
                   f"PGD-{f['pgd_steps']}",
                   f"{r['img_per_s']:,.1f} img/s (epochs {', '.join(f'{s:.2f}' for s in r['seconds'])} s)"
                   f"{peak}{first}")  # fmt: skip


def rows_jobs(f: dict) -> Iterator[tuple[str, str]]:
    if "jobs2_s" not in f:  # cut short after the --jobs 1 run
        yield (f"{f['runs']} runs: --jobs 1", f"{f['jobs1_s']:.1f} s (--jobs 2 did not finish)")
        return
    yield (f"{f['runs']} runs: --jobs 1 / --jobs 2 --jobs-per-gpu 2",
           f"{f['jobs1_s']:.1f} s / {f['jobs2_s']:.1f} s (speed-up {f['speedup']:.2f}x); "
           f"same results.csv: {'yes' if f['same_results'] else 'no'}")  # fmt: skip


def rows_torchrun(f: dict) -> Iterator[tuple[str, str]]:
    acc = ", ".join(f"{k} {v:.3f}" for k, v in f.get("accuracy", {}).items())
    yield (
        "torchrun --nproc_per_node=1, ADVRUN_DDP=1",
        f"backend {f['backend']}, world size {f['world_size']}, {f['seconds']:.1f} s; {acc}",
    )


def _same_batch(r: dict) -> float:
    """advrun's speed-up over ART's certify given advrun's own batch size."""
    return r["speedup_vs_art"] if r["batch"] == r["art_batch"] else r[
        f"speedup_vs_art_batch_{r['batch']}"]  # fmt: skip


def rows_certify(f: dict) -> Iterator[tuple[str, str]]:
    for r in f.get("models", []):
        s = r["s_per_example"]
        art_b = s["art"] if r["batch"] == r["art_batch"] else s[f"art_batch_{r['batch']}"]
        acc = r["certified_accuracy_r0"]
        yield (f"{r['model']} {'x'.join(map(str, r['input']))}, {r['examples']} examples, "
               f"n0 {r['n0']}, n {r['n']}, sigma {f['sigma']}, batch {r['batch']}",
               f"s/example: bare {s['bare']:.4f}, advrun {s['advrun']:.4f}, ART (batch "
               f"{r['art_batch']}) {s['art']:.4f}, ART (batch {r['batch']}) {art_b:.4f}; advrun "
               f"{r['speedup_vs_art']:.1f}x faster than ART's default, {_same_batch(r):.1f}x at "
               f"the same batch, {r['advrun_vs_bare']:.2f}x the bare loop; certified@0 advrun "
               f"{acc['advrun']:.3f}, ART {acc['art']:.3f}")  # fmt: skip


ROWS: dict[str, Callable[[dict], Iterator[tuple[str, str]]]] = {
    "1-tests": rows_tests, "2-recipes": rows_recipes, "3-attacks": rows_attacks,
    "4-training": rows_training, "5-jobs": rows_jobs, "6-torchrun": rows_torchrun,
    "7-certify": rows_certify,
}  # fmt: skip


# -- the targets ------------------------------------------------------------------------------
def _native_over_bare(parts: dict) -> dict[str, float]:
    out = {}
    for kind, r in ((parts["2-recipes"].get("figures") or {}).get("recipes") or {}).items():
        out[f"recipes {kind}"] = r["native_over_bare"]
    for key, m in ((parts["4-training"].get("figures") or {}).get("models") or {}).items():
        c = m["configs"]
        if "native" in c and "bare" in c:
            out[f"training {key}"] = c["bare"]["img_per_s"] / c["native"]["img_per_s"]
    return out


def targets(parts: dict, device: str) -> list[dict]:
    """The five GPU targets, each met / missed / unmeasured (with why)."""
    rec = (parts["2-recipes"].get("figures") or {}).get("recipes") or {}
    att = (parts["3-attacks"].get("figures") or {}).get("torchattacks") or {}
    wrn = ((parts["4-training"].get("figures") or {}).get("models") or {}).get("wrn") or {}
    nob = _native_over_bare(parts)
    art = {k: r["art_over_native"] for k, r in rec.items() if r.get("art_over_native")}
    out = []

    def add(name, target, key, measured, ok, text):
        if device != "cuda":
            verdict, why = "unmeasured", f"toy size on {device}: the targets are GPU claims"
        elif measured is None:
            verdict, why = "unmeasured", parts[key]["why"] or "no figure"
        else:
            verdict, why = ("met" if ok else "missed"), None
        out.append({"target": name, "goal": target, "measured": measured, "figure": text,
                    "verdict": verdict, "why": why})  # fmt: skip

    worst = max(nob.values()) if nob else None
    add("native vs bare loop", "native/bare <= 1.15 (every recipe; both training models)",
        "2-recipes", worst, worst is not None and worst <= 1.15,
        ", ".join(f"{k} {v:.2f}" for k, v in nob.items()) or "–")  # fmt: skip
    least = min(art.values()) if art else None
    add("ART vs native (small CNN)", "ART/native >= 10 (every recipe with an ART trainer)",
        "2-recipes", least, least is not None and least >= 10,
        ", ".join(f"{k} {v:.1f}" for k, v in art.items()) or "–")  # fmt: skip
    speed = att.get("speedup")
    gap = att.get("gap_points")
    add("suite vs torchattacks' AutoAttack", ">= 5x faster at equal strength (<= +0.5 point)",
        "3-attacks", speed, speed is not None and speed >= 5 and gap <= 0.5,
        f"{speed:.1f}x, accuracy gap {gap:+.2f} points" if speed is not None else "–")  # fmt: skip
    c = wrn.get("configs") or {}
    is_34_10 = wrn.get("kwargs") == {"depth": 34, "widen_factor": 10}
    ratio = (c["bf16"]["img_per_s"] / c["native"]["img_per_s"]
             if "bf16" in c and "native" in c and is_34_10 else None)  # fmt: skip
    add(
        "bf16 vs fp32 on WRN-34-10",
        "bf16 img/s > fp32 img/s",
        "4-training",
        ratio,
        ratio is not None and ratio > 1,
        f"bf16/fp32 throughput {ratio:.2f}x" if ratio else "–",
    )
    cert = (parts["7-certify"].get("figures") or {}).get("models") or []
    slowest = min((r["speedup_vs_art"] for r in cert), default=None)
    add("certification >= 20x faster than ART at the same n (issue 20)",
        "advrun/ART >= 20 at the same n0, n, alpha, examples (every model of part 7; ART at "
        "its default batch 32)", "7-certify", slowest, slowest is not None and slowest >= 20,
        ", ".join(f"{r['model']} {r['speedup_vs_art']:.1f}x ({_same_batch(r):.1f}x at the same "
                  f"batch {r['batch']}; n {r['n']})" for r in cert) or "–")  # fmt: skip
    return out


def build(outdir: Path, device: str, seconds: float | None) -> dict:
    parts = {key: part_state(outdir, key) for key in PARTS}
    env = _read_json(outdir / "parts" / "env.json") or {}
    return {
        "schema": "advrun-gpu-check/1",
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "environment": env,
        "seconds": seconds,
        "parts": {k: {"title": PARTS[k]} | v for k, v in parts.items()},
        "targets": targets(parts, device),
    }


def figure_rows(key: str, figures: dict | None) -> list[tuple[str, str]]:
    """The part's (measurement, figure) rows; none when it measured nothing."""
    if not figures or not set(figures) - {"skipped"}:
        return []
    try:
        return list(ROWS[key](figures))
    except (KeyError, TypeError, ZeroDivisionError) as e:  # a file cut short mid-write
        return [("figures", f"incomplete ({type(e).__name__}: {e})")]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict) -> str:
    env = report["environment"]
    head = (f"# advrun GPU check\n\n{report['written']} · {env.get('gpu') or report['device']} · "
            f"torch {env.get('torch', '?')} · python {env.get('python', '?')} · "
            f"total {_f(report['seconds'], '.0f')} s\n\n")  # fmt: skip
    lines = ["| part | measurement | figure | target | verdict |", "|---|---|---|---|---|"]
    for key, p in report["parts"].items():
        label = f"{key[0]} {p['title']}"
        for what, fig in figure_rows(key, p.get("figures")):
            lines.append(f"| {label} | {_cell(what)} | {_cell(fig)} | – | – |")
        if p["status"] != "ok":
            lines.append(f"| {label} | {p['status']} | {p['status']}: {_cell(p['why'])} | – | – |")
    for t in report["targets"]:
        why = f" ({_cell(t['why'])})" if t["why"] else ""
        lines.append(f"| target | {_cell(t['target'])} | {_cell(t['figure'])} | "
                     f"{_cell(t['goal'])} | **{t['verdict']}**{why} |")  # fmt: skip
    return head + "\n".join(lines) + "\n"


def write(outdir: Path, device: str, seconds: float | None) -> dict:
    report = build(outdir, device, seconds)
    (outdir / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n")
    (outdir / "gpu-check.md").write_text(markdown(report))
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--device", required=True)
    ap.add_argument("--seconds", type=float, default=None, help="the whole check's wall time")
    args = ap.parse_args()
    write(Path(args.outdir), args.device, args.seconds)
    print((Path(args.outdir) / "gpu-check.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
