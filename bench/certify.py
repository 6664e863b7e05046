"""Speed of advrun's batched randomized-smoothing certification against ART's ``certify``.

    .venv/bin/python bench/certify.py [--device cpu|cuda] [--models linear,mlp,cnn,cifar]
        [--examples 10] [--n 100000] [--n0 100] [--batch 4096] [--art-batch 32] [--threads 1]
        [--out FILE]

For each model, on the same test examples, at the same sigma, n0, n and alpha, in one process with
``--threads`` torch threads (timings are wall clock; compare the ratios, measured in the same
process on the same inputs):

1. a bare loop: the same number of forward passes (examples x (n0 + n) noisy inputs, ``--batch``
   per pass) with the noise drawn by one ``torch.randn`` per batch and nothing counted: the floor
   any implementation pays for its forward passes;
2. advrun's CERTIFY (``runner.certify.run.certify_model``, PREDICT off): several examples' noise
   samples per forward pass (``--batch`` rows), per-example seeded noise streams, counts on the
   device;
3. ART 1.20's ``PyTorchRandomizedSmoothing.certify(x, n, batch_size)``: a Python loop over the
   examples, each drawing its n0 + n noisy copies with NumPy and predicting them through the
   classifier in batches of ``--art-batch`` (its default 32), and once more with ``--batch``.

Reported: seconds per example of each, advrun's speed-up over ART at both ART batch sizes, advrun
against the bare loop (its overhead), and both certified accuracies at radius 0 (a sanity check;
tests/integration/test_certify_art.py is the statistical comparison).

Models: ``linear`` (a linear classifier: the per-sample cost is the noise alone), ``mlp`` (one
hidden layer of 64) and ``cnn`` (the small CNN, about 2.3 MFLOP per input) on
the embedded 8x8 digits, each trained for 4 epochs on noisy inputs; ``cifar``: the small CNN
(width 0.25) on random 3x32x32 inputs, untrained (speed only: its certified accuracy means
nothing). The ratio to ART grows as a forward pass gets cheaper than ART's per-batch and
per-example overhead (NumPy noise in float64, copies, a classifier call per batch), i.e. for
small models and on GPUs; when the model's own compute dominates on a CPU, no implementation
can be much faster than the bare loop.

``--device cuda`` (part 7 of bench/gpu_check.sh): the models are trained on the CPU as above and
moved to the GPU; the bare loop draws its noise on the GPU, advrun certifies the examples held on
the GPU, and ART's ``PyTorchRandomizedSmoothing`` is given ``device_type="gpu"`` so it predicts
on the GPU as ART's users would (its noise is still drawn by NumPy on the host, in float64, and
each batch copied to the GPU: that is ART's code). Before the timings, untimed forward passes at
both batch sizes start CUDA and cuDNN; ``torch.cuda.synchronize()`` before and after each timing.
Without CUDA, ``--device cuda`` says so and exits with status 2. When ART's certify cannot run
(ART or statsmodels, which its Clopper-Pearson bound imports, missing), nothing is timed and
``--out`` records ``skipped`` with the reason. ``--out`` is rewritten after each model, so a run
cut short keeps the models it finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.certify.run import CertifyContext, certify_model  # noqa: E402
from runner.execute.prepare import prepare  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.spec.certify import CertifySpec  # noqa: E402
from runner.spec.core import DataSpec  # noqa: E402

SIGMA, ALPHA = 0.25, 0.001
DEVICE = torch.device("cpu")  # --device: where the models, advrun and the bare loop run


def _sync() -> None:
    """Wait for the GPU's queued work (CUDA is asynchronous: time finished work only)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def digits_model(arch: str, kwargs: dict) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    data = prepare(DataSpec(dataset="digits"), (0.0, 1.0), torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(arch, data.input_shape, data.num_classes, kwargs)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(4):
        perm = torch.randperm(len(data.x_train))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            x = data.x_train[b] + SIGMA * torch.randn_like(data.x_train[b])  # noise-trained
            loss = F.cross_entropy(model(x), data.y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), data.x_test, data.y_test


def cifar_model() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("small_cnn", (3, 32, 32), 10, {"width": 0.25})
    x = torch.rand(64, 3, 32, 32)
    return model.eval(), x, torch.randint(0, 10, (64,))


MODELS = {
    "linear": lambda: digits_model("mlp", {"hidden": []}),
    "mlp": lambda: digits_model("mlp", {"hidden": [64]}),
    "cnn": lambda: digits_model("small_cnn", {}),
    "cifar": cifar_model,
}


@torch.inference_mode()
def bare_loop(model, x: torch.Tensor, samples: int, batch: int) -> float:
    """Forward passes of ``samples`` noisy copies of each example, ``batch`` rows a pass, the
    noise one ``torch.randn`` a pass on ``x``'s device: the least any implementation does."""
    _sync()
    t0 = time.perf_counter()
    for xi in x:
        for start in range(0, samples, batch):
            rows = min(batch, samples - start)
            model(xi + SIGMA * torch.randn((rows, *x.shape[1:]), device=x.device)).argmax(1)
    _sync()
    return time.perf_counter() - t0


@torch.inference_mode()
def warm_up(model, x: torch.Tensor, batches: set[int]) -> None:
    """Untimed forward passes at each batch size (CUDA's context and cuDNN's first calls)."""
    if DEVICE.type == "cuda":
        for rows in sorted(batches):
            model(x[:1].expand(rows, *x.shape[1:]).contiguous()).argmax(1)
        _sync()


def ours(model, x, y, args) -> tuple[float, float]:
    cfg = CertifySpec(sigma=[SIGMA], n0=args.n0, n=args.n, alpha=ALPHA, predict_n=0,
                      n_examples=len(x), batch_size=args.batch, radii=[0.0])  # fmt: skip
    ctx = CertifyContext(model, x, y, 10, (0.0, 1.0), cfg, log=lambda s: None)
    _sync()
    t0 = time.perf_counter()
    out = certify_model(ctx)
    _sync()
    return time.perf_counter() - t0, out.summaries[0]["curve"][0]["accuracy"]


def art(model, x, y, args, batch: int) -> tuple[float, float]:
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    rs = PyTorchRandomizedSmoothing(
        model, torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
        clip_values=(0.0, 1.0), device_type="gpu" if DEVICE.type == "cuda" else "cpu",
        sample_size=args.n0, scale=SIGMA, alpha=ALPHA,
    )  # fmt: skip
    np.random.seed(0)
    _sync()
    t0 = time.perf_counter()
    pred, _ = rs.certify(x.numpy(), n=args.n, batch_size=batch)  # its input: host arrays
    _sync()
    return time.perf_counter() - t0, float(np.mean(pred == y.numpy()))


def art_missing() -> str | None:
    """Why ART's certify cannot run here (ART, or the statsmodels its bound imports), or None."""
    try:
        from art.estimators.certification.randomized_smoothing import (  # noqa: F401
            PyTorchRandomizedSmoothing,
        )
        from statsmodels.stats.proportion import proportion_confint  # noqa: F401
    except ImportError as e:
        return f"ART's certify cannot run here: {e}"
    return None


def bench(name: str, args) -> dict:
    model, x, y = MODELS[name]()
    x, y = x[: args.examples], y[: args.examples]
    k = len(x)
    model = model.to(DEVICE)
    x_dev, y_dev = x.to(DEVICE), y.to(DEVICE)
    warm_up(model, x_dev, {args.batch, args.art_batch})
    bare = bare_loop(model, x_dev, args.n0 + args.n, args.batch)
    t_ours, acc_ours = ours(model, x_dev, y_dev, args)
    t_art, acc_art = art(model, x, y, args, args.art_batch)
    t_art_b, _ = art(model, x, y, args, args.batch) if args.batch != args.art_batch else (t_art, 0)
    row = {
        "model": name, "device": str(DEVICE), "input": list(x.shape[1:]), "examples": k,
        "n0": args.n0, "n": args.n,
        "batch": args.batch, "art_batch": args.art_batch, "threads": torch.get_num_threads(),
        "s_per_example": {"bare": bare / k, "advrun": t_ours / k, "art": t_art / k,
                          f"art_batch_{args.batch}": t_art_b / k},
        "speedup_vs_art": t_art / t_ours, f"speedup_vs_art_batch_{args.batch}": t_art_b / t_ours,
        "advrun_vs_bare": t_ours / bare,
        "certified_accuracy_r0": {"advrun": acc_ours, "art": acc_art},
    }  # fmt: skip
    print(
        f"{name} {tuple(x.shape[1:])}, {k} examples, n0 {args.n0}, n {args.n}: per example "
        f"bare {bare / k:.3f}s, advrun {t_ours / k:.3f}s, ART(batch {args.art_batch}) "
        f"{t_art / k:.3f}s, ART(batch {args.batch}) {t_art_b / k:.3f}s -> advrun "
        f"{t_art / t_ours:.1f}x faster than ART's default, {t_art_b / t_ours:.1f}x at the same "
        f"batch; {t_ours / bare:.2f}x the bare loop; certified@0 advrun {acc_ours:.3f} ART "
        f"{acc_art:.3f}",
        flush=True,
    )
    return row


def _write(path: str | None, figures: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(figures, indent=2) + "\n")


def main() -> int:
    global DEVICE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the models, advrun, the bare loop and ART's predictions run")  # fmt: skip
    p.add_argument("--models", default="linear,mlp,cnn,cifar")
    p.add_argument("--examples", type=int, default=10)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--batch", type=int, default=4096, help="advrun's (and the bare loop's) rows")
    p.add_argument("--art-batch", type=int, default=32, help="ART's batch_size (its default 32)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", help="write the figures as JSON here (after each model)")
    args = p.parse_args()
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)} (known: {', '.join(MODELS)})")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"bench/certify.py: --device cuda asked, but CUDA is not available here (torch "
              f"{torch.__version__}); use --device cpu", file=sys.stderr)  # fmt: skip
        return 2
    DEVICE = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    figures = {"device": str(DEVICE), "torch": torch.__version__, "sigma": SIGMA, "alpha": ALPHA,
               "gpu": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None,
               "models": []}  # fmt: skip
    why = art_missing()
    if why:
        print(f"bench/certify.py: skipped: {why}", file=sys.stderr)
        _write(args.out, figures | {"skipped": why})
        return 0
    if DEVICE.type == "cuda":
        print(f"device: {figures['gpu']} (torch {torch.__version__})", flush=True)
    for m in args.models.split(","):
        figures["models"].append(bench(m, args))
        _write(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
