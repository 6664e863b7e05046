"""One training epoch of each recipe, three ways, in one process: native, ART, bare torch.

    .venv/bin/python bench/recipes.py [--arch small_cnn] [--repeats 3] [--kinds pgd,trades]
        [--device cuda] [--out FILE]

- native: advrun's loop (``runner.train.loop.fit``, one epoch, monitoring off);
- art: the same through ART's own trainer (``engine: art``), for the kinds that have one;
- bare: a minimal hand-written torch loop doing the same forward and backward passes (the
  PassCounter columns show they match) with the same model, optimizer and batches.

Each is timed ``--repeats`` times after a warm-up epoch, interleaved, and the fastest run is
kept (the machine is shared: the minimum is the least noisy estimate). Printed: seconds per
epoch, forward+backward passes (in examples) per second, native/bare and ART/native. Targets:
native within 1.15x of bare; ART at least 2x slower than native on CPU (10x on a GPU).
Timings are wall clock; compare ratios measured in the same run, never absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner import poisoning  # noqa: E402
from runner.catalog import RECIPES  # noqa: E402
from runner.compile import compile_spec  # noqa: E402
from runner.device import select_device  # noqa: E402
from runner.execute.prepare import prepare  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.passes import PassCounter  # noqa: E402
from runner.recipes.base import TrainContext  # noqa: E402
from runner.recipes.mart import mart_loss  # noqa: E402
from runner.recipes.trades import kl_sum, trades_loss  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.train.loop import FitContext, fit  # noqa: E402

SPEC = """\
name: bench-recipes
device: {device}
data: {{dataset: digits}}
threat: {{norm: linf, eps: 0.1}}
models: [{{name: m, arch: {arch}}}]
poisoning: {{trigger: pattern, target: 0, fraction: 0.1}}
recipes:
{recipes}
"""
KINDS = {
    "standard": "{}",
    "fgsm_augment": "{ratio: 0.5}",
    "pgd": "{steps: 7, step_size: eps/4}",
    "fgsm_rs": "{overfit_drop: null}",
    "trades": "{steps: 7, step_size: eps/4, beta: 6}",
    "mart": "{steps: 7, step_size: eps/4, beta: 6}",
    "backdoor_mitigation": "{fraction: 0.5}",
}


def plan(arch: str, device: str, kinds: list[str]):
    lines = []
    for kind in kinds:
        extra = KINDS[kind].strip("{}")
        common = f"kind: {kind}, epochs: 1, monitor: {{n: 0}}" + (f", {extra}" if extra else "")
        lines.append(f"  - {{name: {kind}, {common}}}")
        if RECIPES.load(kind).art_trainer:
            lines.append(f"  - {{name: {kind}-art, engine: art, {common}}}")
    text = SPEC.format(arch=arch, device=device, recipes="\n".join(lines))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(textwrap.dedent(text))
    return compile_spec(load_spec(f.name).spec)


def fresh_model(arch: str, data, device):
    torch.manual_seed(0)
    return build_model(arch, data.input_shape, data.num_classes).to(device)


def time_fit(run, data, x, y, device) -> tuple[float, dict[str, int]]:
    """Seconds of one epoch of advrun's loop (native or ART engine), and its passes."""
    model = fresh_model(run.model.arch, data, device)
    counter = PassCounter(model)
    threat = run.threat
    ctx = TrainContext(
        device, threat.pixel_range, threat, data.num_classes, data.input_shape, counter,
        run.poisoning,
    )  # fmt: skip
    recipe = RECIPES.load(run.recipe.kind)(run.recipe, ctx)
    with tempfile.TemporaryDirectory() as d:
        res = fit(
            FitContext(model, recipe, x, y, x[:0], y[:0], ctx, 0, Path(d), log=lambda m: None)
        )
    counter.close()
    return res.history[-1]["seconds"], counter.as_dict()


def _ascend(model, x, target, eps, step, steps, start, loss_fn):
    """The bare inner maximisation: signed steps, clamp to the ball and to [0, 1]."""
    if start == "uniform":
        d = torch.empty_like(x).uniform_(-eps, eps)
    elif start == "gaussian":
        d = 0.001 * torch.randn_like(x)
    else:
        d = torch.zeros_like(x)
    d = ((x + d).clamp(0, 1) - x).clamp(-eps, eps)
    for _ in range(steps):
        d.requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(model(x + d), target), d)
        d = (d.detach() + step * g.sign()).clamp(-eps, eps)
        d = (x + d).clamp(0, 1) - x
    return (x + d).detach()


def _ce(logits, y):
    return F.cross_entropy(logits, y, reduction="sum")


def bare_epoch(run, data, x, y, device) -> tuple[float, dict[str, int]]:
    """A minimal torch loop with the recipe's passes: no spec, no checks, no guardrails."""
    r, kind = run.recipe.model_dump(), run.recipe.kind  # plain values: the bare loop has no spec
    model = fresh_model(run.model.arch, data, device)
    counter = PassCounter(model)
    opt = torch.optim.Adam(model.parameters(), lr=r["optimizer"]["lr"])
    eps, bs = r.get("eps", 0.0), r["batch_size"]
    x = torch.cat([x, x[: round(r["fraction"] * len(x))]]) if kind == "backdoor_mitigation" else x
    y = torch.cat([y, y[: round(r["fraction"] * len(y))]]) if kind == "backdoor_mitigation" else y
    if device.type == "cuda":  # CUDA is asynchronous: time finished work only
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    perm = torch.randperm(len(x), device=device)
    for i in range(0, len(x), bs):
        xb, yb = x[perm[i : i + bs]], y[perm[i : i + bs]]
        if kind in ("pgd", "fgsm_rs"):
            step, steps = (r["alpha"], 1) if kind == "fgsm_rs" else (r["step_size"], r["steps"])
            loss = F.cross_entropy(
                model(_ascend(model, xb, yb, eps, step, steps, "uniform", _ce)), yb
            )
        elif kind == "fgsm_augment":
            n = math.ceil(r["ratio"] * len(xb))
            xa = _ascend(model, xb[:n], yb[:n], eps, eps, 1, "none", _ce)
            loss = F.cross_entropy(model(torch.cat([xa, xb[n:]])), yb)
        elif kind == "trades":
            with torch.no_grad():
                p = F.softmax(model(xb), dim=1)
            xa = _ascend(model, xb, p, eps, r["step_size"], r["steps"], "gaussian", kl_sum)
            loss = trades_loss(model(xb), model(xa), yb, r["beta"])
        elif kind == "mart":
            xa = _ascend(model, xb, yb, eps, r["step_size"], r["steps"], "gaussian", _ce)
            loss = mart_loss(model(xb), model(xa), yb, r["beta"])
        else:
            loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    counter.close()
    return seconds, counter.as_dict()


def _rate(best: dict, name: str) -> str:
    if name not in best:
        return "-"
    s, c = best[name]
    return f"{(c['forward_passes'] + c['backward_passes']) / s:,.0f}"


def _total(best: dict, name: str) -> str:
    if name not in best:
        return "-"
    c = best[name][1]
    return f"{c['forward_passes']}+{c['backward_passes']}"


def row(kind: str, best: dict[str, tuple[float, dict[str, int]]]) -> str:
    n, b = best["native"][0], best["bare"][0]
    a = best["art"][0] if "art" in best else float("nan")
    return (
        f"{kind:<20}{n:>9.3f}{b:>9.3f}{a:>9.3f}{n / b:>12.2f}{a / n:>11.2f}"
        f"{_rate(best, 'native'):>14}{_rate(best, 'bare'):>12}{_rate(best, 'art'):>11}"
        f"  {_total(best, 'native')} | {_total(best, 'bare')} | {_total(best, 'art')}"
    )


def figures(kind: str, best: dict[str, tuple[float, dict[str, int]]]) -> dict:
    """One recipe's timings and ratios as numbers (``--out``); None where ART has no trainer."""
    sec = {name: best[name][0] if name in best else None for name in ("native", "bare", "art")}
    passes = {name: best[name][1] for name in best}
    return {
        "native_s": sec["native"],
        "bare_s": sec["bare"],
        "art_s": sec["art"],
        "native_over_bare": sec["native"] / sec["bare"],
        "art_over_native": sec["art"] / sec["native"] if sec["art"] is not None else None,
        "passes": passes,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arch", default="small_cnn", help="mlp, small_cnn (default), ...")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs per engine (min kept)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated recipe kinds")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine, multi-threaded kernels stall "
        "waiting for busy cores and the timings swing 50x; 0 keeps torch's default)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    p = plan(args.arch, args.device, kinds)
    run0 = p.runs[0]
    data = prepare(run0.data, run0.threat.pixel_range, device)

    # every recipe trains on the spec's poisoned set (backdoor_mitigation needs its triggers)
    x, y, _ = poisoning.poison_training_set(
        data.x_train, data.y_train, run0.poisoning, run0.threat.pixel_range, data.num_classes
    )
    print(
        f"digits: {len(x)} training images, arch {args.arch}, device {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}"
    )
    header = (
        f"{'recipe':<20}{'native s':>9}{'bare s':>9}{'ART s':>9}{'native/bare':>12}"
        f"{'ART/native':>11}{'native pass/s':>14}{'bare pass/s':>12}{'ART pass/s':>11}"
        f"  passes native | bare | ART (fwd+bwd examples)"
    )
    print(header)
    runs = {r.recipe.name: r for r in p.runs}
    out = {"arch": args.arch, "device": str(device), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "repeats": args.repeats, "n_train": len(x),
           "recipes": {}}  # fmt: skip
    for kind in kinds:
        native, art = runs[kind], runs.get(f"{kind}-art")
        best: dict[str, tuple[float, dict[str, int]]] = {}
        ways = {
            "native": lambda r=native: time_fit(r, data, x, y, device),
            "bare": lambda r=native: bare_epoch(r, data, x, y, device),
        }
        if art is not None:
            ways["art"] = lambda r=art: time_fit(r, data, x, y, device)
        for fn in ways.values():  # warm-up: first-call allocations, lazy imports
            fn()
        for _ in range(args.repeats):
            for name, fn in ways.items():
                s, passes = fn()
                if name not in best or s < best[name][0]:
                    best[name] = (s, passes)
        print(row(kind, best), flush=True)
        out["recipes"][kind] = figures(kind, best)
        if args.out:  # after every recipe: a run cut short keeps what it measured
            Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
