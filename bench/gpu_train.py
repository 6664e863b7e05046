"""PGD-10 training throughput on synthetic 32x32x3 images: advrun's native loop against a bare
loop, bf16 on/off, channels_last on/off, torch.compile on/off, and the peak GPU memory of each.

    python3 bench/gpu_train.py --device cuda --out FILE [--size gpu|toy] [--models prn18,wrn]

Part 4 of bench/gpu_check.sh. For each model, on the same random images (uniform pixels, random
labels: throughput does not depend on what is learned) and the optimizer of
specs/cifar10-pgd.yaml (SGD lr 0.1, momentum 0.9, weight decay 5e-4), batch 128, PGD-10 at Linf
8/255 with steps of 2/255 from a uniform start:

- ``bare``: a hand-written loop (attack in eval mode with frozen weights, as the recipe does, then
  one training step), fp32;
- ``native``: advrun's loop (``runner.train.loop.fit``, recipe ``pgd``, monitoring off), fp32;
- ``bf16``, ``channels_last``, ``bf16+channels_last``: the recipe's ``amp``/``channels_last``;
- ``bf16+channels_last+compile``: ``compile: true`` on top (its first epoch compiles).

Each runs one warm-up epoch and then ``timed`` epochs (the fastest kept, all recorded). The
figures are written after every configuration, so a part cut short by its time limit keeps what
it measured. Sizes: ``gpu`` (an H100's budget of under 3 minutes, an estimate never checked on
one: PreAct ResNet-18 on 1024 images, WRN-34-10 on 512, 2 timed epochs) and ``toy`` (any CPU in
seconds: PreAct ResNet-18 of width 8 and WRN-10-1 on 32 images, batch 16, PGD-2 with steps of
eps/2, one timed epoch; bf16, channels_last and compile apply on CUDA only, so on a CPU those
rows time the fp32 loop again).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.catalog import RECIPES  # noqa: E402
from runner.compile import compile_spec  # noqa: E402
from runner.device import seed_everything, select_device  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.recipes.base import TrainContext  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.train.loop import FitContext, fit  # noqa: E402
from runner.train.optim import make_optimizer  # noqa: E402

# name -> (arch, kwargs, training images) per size
MODELS = {
    "gpu": {
        "prn18": ("preact_resnet18", {}, 1024),
        "wrn": ("wide_resnet", {"depth": 34, "widen_factor": 10}, 512),
    },
    "toy": {
        "prn18": ("preact_resnet18", {"width": 8}, 32),
        "wrn": ("wide_resnet", {"depth": 10, "widen_factor": 1}, 32),
    },
}
SETTINGS = {
    "gpu": {"batch": 128, "steps": 10, "step": "eps/4", "timed": 2},
    "toy": {"batch": 16, "steps": 2, "step": "eps/2", "timed": 1},
}
# configuration -> the recipe's options (None: the bare loop); compile last, it takes longest
CONFIGS = {
    "bare": None,
    "native": {},
    "bf16": {"amp": "bf16"},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"amp": "bf16", "channels_last": True},
    "bf16+channels_last+compile": {"amp": "bf16", "channels_last": True, "compile": True},
}
SPEC = """\
name: gpu-train
device: {device}
data: {{dataset: digits}}
threat: {{norm: linf, eps: 8/255}}
models: [{{name: m, arch: small_cnn}}]
recipes:
{recipes}
"""


def recipes(device: str, size: str) -> dict:
    """config name -> (recipe config, threat), compiled from one spec like a user's."""
    s = SETTINGS[size]
    lines = []
    for i, options in enumerate(CONFIGS.values()):
        options = options or {}
        extra = "".join(f", {k}: {str(v).lower() if isinstance(v, bool) else v}"
                        for k, v in options.items())  # fmt: skip
        lines.append(
            f"  - {{name: c{i}, kind: pgd, epochs: {1 + s['timed']}, batch_size: {s['batch']}, "
            f"steps: {s['steps']}, step_size: {s['step']}, monitor: {{n: 0}}, "
            f"optimizer: {{name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 5.0e-4}}{extra}}}"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(SPEC.format(device=device, recipes="\n".join(lines)))
    plan = compile_spec(load_spec(f.name).spec)
    Path(f.name).unlink()
    return {name: (run.recipe, run.threat) for name, run in zip(CONFIGS, plan.runs, strict=True)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # CUDA is asynchronous: time finished work only
        torch.cuda.synchronize(device)


def bare_epochs(model, cfg, threat, x, y, epochs: int) -> list[float]:
    """Seconds of each epoch of a minimal PGD-training loop: no spec, no hooks, no checks."""
    opt = make_optimizer(model, cfg.optimizer)
    eps, step, steps, bs = threat.eps, float(cfg.step_size), int(cfg.steps), int(cfg.batch_size)
    params = list(model.parameters())
    seconds = []
    for _ in range(epochs):
        _sync(x.device)
        t0 = time.perf_counter()
        for idx in torch.randperm(len(x), device=x.device).split(bs):
            xb, yb = x[idx], y[idx]
            model.eval()
            for p in params:
                p.requires_grad_(False)
            d = torch.empty_like(xb).uniform_(-eps, eps)
            d = (xb + d).clamp(0, 1) - xb
            for _ in range(steps):
                d.requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(model(xb + d), yb, reduction="sum"), d)
                d = (d.detach() + step * g.sign()).clamp(-eps, eps)
                d = (xb + d).clamp(0, 1) - xb
            for p in params:
                p.requires_grad_(True)
            model.train()
            loss = F.cross_entropy(model(xb + d), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(x.device)
        seconds.append(time.perf_counter() - t0)
    return seconds


def native_epochs(model, cfg, threat, x, y, workdir: Path) -> list[float]:
    """Seconds of each epoch of advrun's loop (``fit``), as its epoch table records them."""
    ctx = TrainContext(x.device, threat.pixel_range, threat, 10, tuple(x.shape[1:]))
    recipe = RECIPES.load(cfg.kind)(cfg, ctx)
    job = FitContext(model, recipe, x, y, x[:0], y[:0], ctx, 0, workdir, log=lambda m: None)
    return [row["seconds"] for row in fit(job).history]


def measure(name: str, arch: str, kwargs: dict, n: int, config: str, device, cfgs) -> dict:
    """One configuration of one model: epoch seconds, images/s, peak memory."""
    cfg, threat = cfgs[config]
    torch.manual_seed(0)
    x = torch.rand(n, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    model = build_model(arch, (3, 32, 32), 10, kwargs).to(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # checkpoints off the disk
    with tempfile.TemporaryDirectory(dir=shm) as d:
        if CONFIGS[config] is None:
            seconds = bare_epochs(model, cfg, threat, x, y, int(cfg.epochs))
        else:
            seconds = native_epochs(model, cfg, threat, x, y, Path(d))
    timed = seconds[1:]
    return {
        "seconds": timed,
        "first_epoch_s": seconds[0],
        "img_per_s": n / min(timed),
        "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--size", choices=list(MODELS), default=None, help="gpu on CUDA, else toy")
    ap.add_argument("--models", default="prn18,wrn", help="comma-separated: prn18, wrn")
    ap.add_argument("--out", required=True, help="write the figures as JSON here")
    args = ap.parse_args()
    device = select_device(args.device)
    seed_everything(0)  # as an advrun run does: cuDNN autotuning on CUDA, for bare and native alike
    size = args.size or ("gpu" if device.type == "cuda" else "toy")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    cfgs = recipes(args.device, size)
    s = SETTINGS[size]
    out: dict = {"device": str(device), "size": size, "torch": torch.__version__,
                 "batch_size": s["batch"], "pgd_steps": s["steps"], "models": {}}  # fmt: skip
    for name in names:
        arch, kwargs, n = MODELS[size][name]
        out["models"][name] = {"arch": arch, "kwargs": kwargs, "n": n, "configs": {}}
    # every model's uncompiled configurations first: a part cut short loses compile only
    order = [(m, c) for late in (False, True) for m in names for c in CONFIGS
             if ("compile" in c) == late]  # fmt: skip
    for name, config in order:
        arch, kwargs, n = MODELS[size][name]
        t0 = time.perf_counter()
        r = measure(name, arch, kwargs, n, config, device, cfgs)
        out["models"][name]["configs"][config] = r
        peak = f"{r['peak_mib']:.0f} MiB" if r["peak_mib"] is not None else "-"
        print(f"{name:6s} {config:28s} {r['img_per_s']:9.1f} img/s  peak {peak:>10s}  "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
